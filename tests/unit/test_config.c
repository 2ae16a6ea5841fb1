/* test_config.c: defaults, environment and flags fill the settings table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domain/retention.h"
#include "orderflow/config.h"
#include "orderflow/prune.h"
#include "orderflow/worker.h"

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

/* The retention settings, as the workers read them: the runtime's rows of
 * OF_WORKER_CONFIG and order-status's deadline retention. */
typedef struct worker_settings {
    of_worker_settings w; /* common settings, prune included */
    int64_t deadlines;    /* retention of fired or cancelled deadlines */
} worker_settings;

static const of_config_item worker_items[] = {
    OF_WORKER_CONFIG(worker_settings, w),
    OF_RETENTION_DEADLINES_CONFIG(offsetof(worker_settings, deadlines)),
};
#define N_WORKER_ITEMS (sizeof worker_items / sizeof worker_items[0])
#define DAY_MS         (24LL * 3600 * 1000)

static int setup_retention(void **state)
{
    static const char *const vars[] = {
        "ORDERFLOW_PRUNE_INTERVAL",         "ORDERFLOW_PRUNE_BATCH",
        "ORDERFLOW_RETENTION_INBOX",        "ORDERFLOW_RETENTION_OUTBOX",
        "ORDERFLOW_RETENTION_DEAD_LETTERS", "ORDERFLOW_RETENTION_HISTORY",
        "ORDERFLOW_RETENTION_DEADLINES",
    };
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        unsetenv(vars[i]);
    return 0;
}

/* Loads the worker table from argv (NULL-terminated); returns the result and
 * what went to the error stream in *msg (free it). */
static int load_worker(worker_settings *s, char **argv, char **msg)
{
    size_t len = 0;
    int argc = 0;
    FILE *err = open_memstream(msg, &len);
    while (argv[argc] != NULL)
        argc++;
    int rc = of_config_load(worker_items, N_WORKER_ITEMS, s, argc, argv, NULL, err);
    fclose(err);
    return rc;
}

static void test_retention_defaults(void **state)
{
    worker_settings s;
    char *argv[] = {"prog", NULL}, *msg = NULL, err[160];
    assert_int_equal(load_worker(&s, argv, &msg), OF_CONFIG_OK);
    assert_int_equal(s.w.prune.interval, 60000);
    assert_int_equal(s.w.prune.batch, 1000);
    assert_int_equal(s.w.prune.inbox, 14 * DAY_MS);
    assert_int_equal(s.w.prune.outbox, DAY_MS);
    assert_int_equal(s.w.prune.dead_letters, 30 * DAY_MS);
    assert_int_equal(s.w.prune.history, 0); /* the business record is kept */
    assert_int_equal(s.deadlines, 7 * DAY_MS);
    assert_int_equal(of_prune_settings_check(&s.w.prune, err, sizeof err), 0);
    of_config_free(worker_items, N_WORKER_ITEMS, &s);
    free(msg);
}

static void test_retention_env_and_flags(void **state)
{
    worker_settings s;
    char *argv[] = {"prog",
                    "--retention-outbox=6h",
                    "--prune-interval",
                    "0",
                    "--prune-batch=50",
                    "--retention-history",
                    "90d",
                    NULL};
    char *msg = NULL;
    setenv("ORDERFLOW_RETENTION_INBOX", "2d", 1);
    setenv("ORDERFLOW_RETENTION_DEADLINES", "3d", 1);
    setenv("ORDERFLOW_RETENTION_DEAD_LETTERS", "90m", 1);
    setenv("ORDERFLOW_RETENTION_OUTBOX", "1h", 1); /* the flag wins */
    assert_int_equal(load_worker(&s, argv, &msg), OF_CONFIG_OK);
    assert_int_equal(s.w.prune.inbox, 2 * DAY_MS);
    assert_int_equal(s.w.prune.outbox, 6 * 3600 * 1000);
    assert_int_equal(s.w.prune.dead_letters, 90 * 60 * 1000);
    assert_int_equal(s.w.prune.interval, 0); /* pruning off */
    assert_int_equal(s.w.prune.batch, 50);
    assert_int_equal(s.w.prune.history, 90 * DAY_MS);
    assert_int_equal(s.deadlines, 3 * DAY_MS);
    of_config_free(worker_items, N_WORKER_ITEMS, &s);
    free(msg);
}

/* One value that must be refused, naming its setting and where it came from. */
static void expect_refused(const char *env, const char *value, char *flag, const char *needle)
{
    worker_settings s;
    char *argv[] = {"prog", flag, NULL}, *msg = NULL;
    setup_retention(NULL);
    if (env != NULL)
        setenv(env, value, 1);
    assert_int_equal(load_worker(&s, argv, &msg), OF_CONFIG_ERR);
    assert_non_null(strstr(msg, needle));
    of_config_free(worker_items, N_WORKER_ITEMS, &s);
    free(msg);
}

/* The inbox is kept at least a minute (exit 78 in a worker); other bounds. */
static void test_retention_refused(void **state)
{
    worker_settings s;
    char *ok[] = {"prog", "--retention-inbox=1h", "--retention-history=1h", NULL}, *msg = NULL;
    char err[160];

    expect_refused(NULL, NULL, "--retention-inbox=59s", "\"retention-inbox\"");
    expect_refused(NULL, NULL, "--retention-inbox=59s", "outside 60000..");
    expect_refused("ORDERFLOW_RETENTION_INBOX", "30s", NULL, "ORDERFLOW_RETENTION_INBOX");
    expect_refused("ORDERFLOW_RETENTION_INBOX", "14", NULL, "outside 60000..");
    expect_refused(NULL, NULL, "--retention-outbox=fortnight", "\"retention-outbox\"");
    expect_refused(NULL, NULL, "--retention-dead-letters=10s", "\"retention-dead-letters\"");
    expect_refused(NULL, NULL, "--retention-deadlines=-1d", "\"retention-deadlines\"");
    expect_refused(NULL, NULL, "--prune-batch=0", "outside 1..100000");
    expect_refused(NULL, NULL, "--prune-interval=2d", "\"prune-interval\"");

    setup_retention(NULL);
    assert_int_equal(load_worker(&s, ok, &msg), OF_CONFIG_OK);
    assert_int_equal(s.w.prune.inbox, 3600 * 1000);
    assert_int_equal(of_prune_settings_check(&s.w.prune, err, sizeof err), 0);
    /* A history retention is 0 (kept) or at least an hour: checked after loading. */
    s.w.prune.history = 30 * 60 * 1000;
    assert_int_equal(of_prune_settings_check(&s.w.prune, err, sizeof err), OF_EINVAL);
    assert_non_null(strstr(err, "\"retention-history\""));
    of_config_free(worker_items, N_WORKER_ITEMS, &s);
    free(msg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults, setup),
        cmocka_unit_test_setup(test_env_then_flags, setup),
        cmocka_unit_test_setup(test_errors_name_the_setting, setup),
        cmocka_unit_test_setup(test_help, setup),
        cmocka_unit_test(test_mask_secret),
        cmocka_unit_test_setup(test_retention_defaults, setup_retention),
        cmocka_unit_test_setup(test_retention_env_and_flags, setup_retention),
        cmocka_unit_test_setup(test_retention_refused, setup_retention),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
