/* test_config.c: defaults, environment and flags fill the settings table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderflow/config.h"

typedef struct settings {
    char *url;       /* a secret */
    char *name;      /* a plain string */
    int64_t batch;   /* bounded integer */
    int64_t timeout; /* duration in ms */
    int dry;         /* boolean */
} settings;

static const of_config_item items[] = {
    {"database-url", "T_DATABASE_URL", "database-url", OF_CFG_SECRET, "postgresql://u:pw@h/db",
     "db", offsetof(settings, url), 0, -1},
    {"name", "T_NAME", "name", OF_CFG_STRING, NULL, "a name", offsetof(settings, name), 0, -1},
    {"batch-size", "T_BATCH", "batch-size", OF_CFG_INT, "100", "batch", offsetof(settings, batch),
     1, 1000},
    {"timeout", "T_TIMEOUT", "timeout", OF_CFG_MS, "5s", "t", offsetof(settings, timeout), 1,
     3600000},
    {"dry-run", "T_DRY", "dry-run", OF_CFG_BOOL, "false", "dry", offsetof(settings, dry), 0, -1},
};
#define N_ITEMS (sizeof items / sizeof items[0])

static int setup(void **state)
{
    unsetenv("T_DATABASE_URL");
    unsetenv("T_NAME");
    unsetenv("T_BATCH");
    unsetenv("T_TIMEOUT");
    unsetenv("T_DRY");
    return 0;
}

static void test_defaults(void **state)
{
    settings s;
    char *argv[] = {"prog", NULL};
    int rest = 0;
    assert_int_equal(of_config_load(items, N_ITEMS, &s, 1, argv, &rest, NULL), OF_CONFIG_OK);
    assert_string_equal(s.url, "postgresql://u:pw@h/db");
    assert_null(s.name);
    assert_int_equal(s.batch, 100);
    assert_int_equal(s.timeout, 5000);
    assert_int_equal(s.dry, 0);
    assert_int_equal(rest, 1);
    of_config_free(items, N_ITEMS, &s);
}

static void test_env_then_flags(void **state)
{
    settings s;
    char *argv[] = {"prog", "pos1", "--batch-size=7", "--timeout", "2m", "--dry-run", "pos2", NULL};
    int rest = 0;
    setenv("T_BATCH", "50", 1);
    setenv("T_NAME", "from-env", 1);
    assert_int_equal(of_config_load(items, N_ITEMS, &s, 7, argv, &rest, NULL), OF_CONFIG_OK);
    assert_int_equal(s.batch, 7); /* flag beats environment */
    assert_string_equal(s.name, "from-env");
    assert_int_equal(s.timeout, 120000);
    assert_int_equal(s.dry, 1);
    assert_int_equal(rest, 3);
    assert_string_equal(argv[1], "pos1");
    assert_string_equal(argv[2], "pos2");
    of_config_free(items, N_ITEMS, &s);
}

/* Loads with one bad value and returns what was written to the error stream. */
static char *load_error(const char *env, const char *value, char *flag)
{
    settings s;
    char *argv[] = {"prog", flag, NULL};
    char *buf = NULL;
    size_t len = 0;
    FILE *err = open_memstream(&buf, &len);
    if (env != NULL)
        setenv(env, value, 1);
    int rc = of_config_load(items, N_ITEMS, &s, flag ? 2 : 1, argv, NULL, err);
    fclose(err);
    assert_int_equal(rc, OF_CONFIG_ERR);
    of_config_free(items, N_ITEMS, &s);
    return buf;
}

static void test_errors_name_the_setting(void **state)
{
    char *msg = load_error("T_BATCH", "lots", NULL);
    assert_non_null(strstr(msg, "\"batch-size\""));
    assert_non_null(strstr(msg, "T_BATCH"));
    free(msg);
    setup(NULL);
    msg = load_error(NULL, NULL, "--batch-size=0");
    assert_non_null(strstr(msg, "outside 1..1000"));
    free(msg);
    msg = load_error(NULL, NULL, "--timeout=5 minutes");
    assert_non_null(strstr(msg, "\"timeout\""));
    free(msg);
    msg = load_error(NULL, NULL, "--nope=1");
    assert_non_null(strstr(msg, "unknown option \"--nope\""));
    free(msg);
    msg = load_error("T_DRY", "maybe", NULL);
    assert_non_null(strstr(msg, "not a boolean"));
    free(msg);
}

static void test_help(void **state)
{
    settings s;
    char *argv[] = {"prog", "--help", NULL};
    assert_int_equal(of_config_load(items, N_ITEMS, &s, 2, argv, NULL, NULL), OF_CONFIG_HELP);
    of_config_free(items, N_ITEMS, &s);

    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    of_config_print_help(out, "prog", "does things", items, N_ITEMS);
    fclose(out);
    assert_non_null(strstr(buf, "T_BATCH"));
    assert_non_null(strstr(buf, "--batch-size"));
    assert_null(strstr(buf, "pw@")); /* secret defaults are not printed */
    free(buf);
}

/* Connection strings are logged with every password masked. */
static void test_mask_secret(void **state)
{
    static const char *const cases[][2] = {
        {"postgresql://u:pw@h/db", "postgresql://u:****@h/db"},
        {"postgresql://u:p%25%40ss@h:5432/db?sslmode=require",
         "postgresql://u:****@h:5432/db?sslmode=require"},
        /* An unencoded '@' in the password: everything up to the last '@' is masked. */
        {"postgres://u:p@ss@h/db", "postgres://u:****@h/db"},
        {"postgresql://u@h/db?password=p%25%40ss&sslmode=require",
         "postgresql://u@h/db?password=****&sslmode=require"},
        {"postgresql://h/db?sslmode=disable&sslpassword=x%25y&password=z",
         "postgresql://h/db?sslmode=disable&sslpassword=****&password=****"},
        {"postgresql://h/db?passwordx=1", "postgresql://h/db?passwordx=1"},
        {"postgresql:///db", "postgresql:///db"},
        {"host=h user=u password=p%@ss", "****"},
    };
    char out[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        of_config_mask_secret(out, sizeof out, cases[i][0]);
        assert_string_equal(out, cases[i][1]);
        assert_null(strstr(out, "p%"));
        assert_null(strstr(out, "ss@"));
    }
    /* Truncation keeps the string terminated. */
    of_config_mask_secret(out, 10, "postgresql://u:pw@h/db");
    assert_int_equal(strlen(out), 9);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults, setup),
        cmocka_unit_test_setup(test_env_then_flags, setup),
        cmocka_unit_test_setup(test_errors_name_the_setting, setup),
        cmocka_unit_test_setup(test_help, setup),
        cmocka_unit_test(test_mask_secret),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
