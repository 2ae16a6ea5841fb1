/* test_migrate.c: unit tests for migration file discovery (names, ordering,
 * error cases) and for connection failures that need no server. The
 * PostgreSQL side is tested by tests/integration/test_migrate.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "migrate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void test_parse_valid_names(void **state)
{
    int64_t version = 0;
    char name[OF_MIGRATE_NAME_MAX + 1];
    of_migration_kind kind;
    char err[256] = "";

    assert_int_equal(of_migration_parse_name("0001_init.up.sql", &version, name, sizeof name, &kind,
                                             err, sizeof err),
                     1);
    assert_int_equal(version, 1);
    assert_string_equal(name, "init");
    assert_int_equal(kind, OF_MIGRATION_UP);

    assert_int_equal(of_migration_parse_name("0042_add-index_2.down.sql", &version, name,
                                             sizeof name, &kind, err, sizeof err),
                     1);
    assert_int_equal(version, 42);
    assert_string_equal(name, "add-index_2");
    assert_int_equal(kind, OF_MIGRATION_DOWN);

    /* golang-migrate also allows timestamps as versions. */
    assert_int_equal(of_migration_parse_name("20240131120000_x.up.sql", &version, name, sizeof name,
                                             &kind, err, sizeof err),
                     1);
    assert_int_equal(version, INT64_C(20240131120000));
    assert_string_equal(name, "x");

    /* Eighteen digits is the longest accepted version. */
    assert_int_equal(of_migration_parse_name("999999999999999999_max.up.sql", &version, name,
                                             sizeof name, &kind, err, sizeof err),
                     1);
    assert_int_equal(version, INT64_C(999999999999999999));
}

static void test_parse_ignored_names(void **state)
{
    static const char *const ignored[] = {"README.md",         ".hidden.up.sql",
                                          "0001_init.up.sql~", "0001_init.up.sql.orig",
                                          "notes.txt",         "Makefile"};
    int64_t version = -7;
    char name[OF_MIGRATE_NAME_MAX + 1] = "untouched";
    of_migration_kind kind;
    char err[256] = "";

    for (size_t i = 0; i < N(ignored); i++) {
        assert_int_equal(of_migration_parse_name(ignored[i], &version, name, sizeof name, &kind,
                                                 err, sizeof err),
                         0);
    }
    assert_int_equal(version, -7);
    assert_string_equal(name, "untouched");
    assert_string_equal(err, "");
}

static void test_parse_bad_names(void **state)
{
    /* Each ends in .sql, so each must be refused, with the file named. */
    static const char *const bad[] = {
        "init.up.sql",     /* no version */
        "0001init.up.sql", /* no "_" */
        "0001_.up.sql",    /* empty name */
        "0001_init.sql",   /* no direction */
        "0001_init.sideways.sql",
        "0000_zero.up.sql",                    /* version 0 is "nothing applied" */
        "0001_in it.up.sql",                   /* space in the name */
        "0001_in.it.up.sql",                   /* dot in the name */
        "1234567890123456789_too_long.up.sql", /* 19 digits */
        "-1_negative.up.sql",
        "_init.up.sql",
        "0001_init.UP.sql", /* direction is lower case */
    };
    int64_t version;
    char name[OF_MIGRATE_NAME_MAX + 1];
    of_migration_kind kind;

    for (size_t i = 0; i < N(bad); i++) {
        char err[256] = "";
        int rc =
            of_migration_parse_name(bad[i], &version, name, sizeof name, &kind, err, sizeof err);
        if (rc != OF_MIGRATE_EFILES)
            fail_msg("\"%s\" gave %d, expected OF_MIGRATE_EFILES", bad[i], rc);
        assert_non_null(strstr(err, bad[i]));
    }

    /* A name longer than OF_MIGRATE_NAME_MAX. */
    {
        char file[OF_MIGRATE_NAME_MAX + 32];
        char err[256] = "";
        memset(file, 'a', sizeof file);
        memcpy(file, "0001_", 5);
        strcpy(file + 5 + OF_MIGRATE_NAME_MAX + 1, ".up.sql");
        assert_int_equal(
            of_migration_parse_name(file, &version, name, sizeof name, &kind, err, sizeof err),
            OF_MIGRATE_EFILES);
        assert_non_null(strstr(err, "longer than"));
    }
}

static void test_set_sorted_numerically_with_gaps(void **state)
{
    /* Readdir order is arbitrary and "10" < "9" as text: the set must sort
     * by number. Gaps (no 3..8) are fine. */
    static const char *const names[] = {"10_ten.up.sql",     "0002_two.down.sql", "9_nine.up.sql",
                                        "README.md",         "0001_init.up.sql",  "0002_two.up.sql",
                                        "0001_init.down.sql"};
    of_migration_set set;
    char err[OF_MIGRATE_ERRSIZE] = "";

    assert_int_equal(of_migration_set_from_names(&set, "dir", names, N(names), err, sizeof err),
                     OF_MIGRATE_OK);
    assert_string_equal(set.dir, "dir");
    assert_int_equal(set.count, 4);
    assert_int_equal(set.items[0].version, 1);
    assert_string_equal(set.items[0].name, "init");
    assert_string_equal(set.items[0].up_file, "0001_init.up.sql");
    assert_string_equal(set.items[0].down_file, "0001_init.down.sql");
    assert_int_equal(set.items[1].version, 2);
    assert_string_equal(set.items[1].down_file, "0002_two.down.sql");
    assert_int_equal(set.items[2].version, 9);
    assert_null(set.items[2].down_file);
    assert_int_equal(set.items[3].version, 10);
    assert_string_equal(set.items[3].up_file, "10_ten.up.sql");

    assert_ptr_equal(of_migration_set_find(&set, 9), &set.items[2]);
    assert_null(of_migration_set_find(&set, 3));

    of_migration_set_free(&set);
    assert_int_equal(set.count, 0);
    assert_null(set.items);
    /* Freeing twice is harmless. */
    of_migration_set_free(&set);
}

static void test_set_empty(void **state)
{
    static const char *const names[] = {"README.md"};
    of_migration_set set;
    char err[OF_MIGRATE_ERRSIZE] = "";
    assert_int_equal(of_migration_set_from_names(&set, "d", names, N(names), err, sizeof err),
                     OF_MIGRATE_OK);
    assert_int_equal(set.count, 0);
    of_migration_set_free(&set);
}

/* Builds a set that must fail with OF_MIGRATE_EFILES and an error holding
 * every string in want. */
static void expect_set_error(const char *const *names, size_t n, const char *want1,
                             const char *want2)
{
    of_migration_set set;
    char err[OF_MIGRATE_ERRSIZE] = "";
    assert_int_equal(of_migration_set_from_names(&set, "mig", names, n, err, sizeof err),
                     OF_MIGRATE_EFILES);
    assert_int_equal(set.count, 0);
    assert_null(set.items);
    if (strstr(err, want1) == NULL || (want2 != NULL && strstr(err, want2) == NULL))
        fail_msg("error \"%s\" does not name \"%s\" and \"%s\"", err, want1, want2 ? want2 : "");
}

static void test_set_duplicate_versions(void **state)
{
    static const char *const two_names[] = {"0001_init.up.sql", "0001_other.up.sql"};
    static const char *const two_spellings[] = {"1_init.up.sql", "0001_init.up.sql"};
    static const char *const two_downs[] = {"0003_x.up.sql", "0003_x.down.sql", "3_x.down.sql"};
    expect_set_error(two_names, N(two_names), "0001_init.up.sql", "0001_other.up.sql");
    expect_set_error(two_spellings, N(two_spellings), "1_init.up.sql", "0001_init.up.sql");
    expect_set_error(two_downs, N(two_downs), "0003_x.down.sql", "3_x.down.sql");
    {
        of_migration_set set;
        char err[OF_MIGRATE_ERRSIZE] = "";
        assert_int_equal(
            of_migration_set_from_names(&set, "mig", two_names, N(two_names), err, sizeof err),
            OF_MIGRATE_EFILES);
        assert_non_null(strstr(err, "duplicate migration version 1"));
    }
}

static void test_set_down_without_up(void **state)
{
    static const char *const names[] = {"0001_init.up.sql", "0002_two.down.sql"};
    expect_set_error(names, N(names), "0002_two.down.sql", "0002_two.up.sql");
}

static void test_set_down_name_mismatch(void **state)
{
    static const char *const other_name[] = {"0001_init.up.sql", "0001_start.down.sql"};
    static const char *const other_digits[] = {"0001_init.up.sql", "1_init.down.sql"};
    expect_set_error(other_name, N(other_name), "0001_start.down.sql", "0001_init.down.sql");
    expect_set_error(other_digits, N(other_digits), "1_init.down.sql", "0001_init.down.sql");
}

static void test_set_bad_name_fails_whole_set(void **state)
{
    static const char *const names[] = {"0001_init.up.sql", "0002-two.up.sql"};
    expect_set_error(names, N(names), "0002-two.up.sql", NULL);
}

/* Writes an empty file dir/name. */
static void touch(const char *dir, const char *name)
{
    char path[512];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("select 1;\n", f);
    assert_int_equal(fclose(f), 0);
}

static void remove_tree(const char *dir, const char *const *names, size_t n, const char *subdir)
{
    char path[512];
    for (size_t i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    if (subdir != NULL) {
        snprintf(path, sizeof path, "%s/%s", dir, subdir);
        rmdir(path);
    }
    rmdir(dir);
}

static void test_load_directory(void **state)
{
    static const char *const files[] = {"0002_b.up.sql", "0001_a.up.sql", "0001_a.down.sql",
                                        "README.md", ".0003_hidden.up.sql"};
    char dir[] = "/tmp/of_test_migrate_XXXXXX";
    char sub[600];
    of_migration_set set;
    char err[OF_MIGRATE_ERRSIZE] = "";

    assert_non_null(mkdtemp(dir));
    for (size_t i = 0; i < N(files); i++)
        touch(dir, files[i]);
    /* A directory whose name looks like a migration is not a file: ignored. */
    snprintf(sub, sizeof sub, "%s/0009_dir.up.sql", dir);
    assert_int_equal(mkdir(sub, 0700), 0);

    assert_int_equal(of_migration_set_load(&set, dir, err, sizeof err), OF_MIGRATE_OK);
    assert_string_equal(set.dir, dir);
    assert_int_equal(set.count, 2);
    assert_int_equal(set.items[0].version, 1);
    assert_string_equal(set.items[0].down_file, "0001_a.down.sql");
    assert_int_equal(set.items[1].version, 2);
    assert_null(set.items[1].down_file);
    of_migration_set_free(&set);

    /* One bad .sql name spoils the directory. */
    touch(dir, "0004 bad.up.sql");
    assert_int_equal(of_migration_set_load(&set, dir, err, sizeof err), OF_MIGRATE_EFILES);
    assert_non_null(strstr(err, "0004 bad.up.sql"));
    assert_int_equal(set.count, 0);

    {
        static const char *const all[] = {"0002_b.up.sql",       "0001_a.up.sql",
                                          "0001_a.down.sql",     "README.md",
                                          ".0003_hidden.up.sql", "0004 bad.up.sql"};
        remove_tree(dir, all, N(all), "0009_dir.up.sql");
    }
}

static void test_load_missing_directory(void **state)
{
    of_migration_set set;
    char err[OF_MIGRATE_ERRSIZE] = "";
    assert_int_equal(of_migration_set_load(&set, "/nonexistent/of-migrations", err, sizeof err),
                     OF_MIGRATE_EFILES);
    assert_non_null(
        strstr(err, "could not open migrations directory \"/nonexistent/of-migrations\""));
    assert_int_equal(set.count, 0);
}

static void test_connect_refused_is_unavailable(void **state)
{
    /* Nothing listens on port 1: a real refused connection, no server
     * involved. The password must not appear in the message. */
    PGconn *conn = (PGconn *)(uintptr_t)1;
    char err[OF_MIGRATE_ERRSIZE] = "";
    assert_int_equal(of_migrate_connect("postgresql://u:sekrit@127.0.0.1:1/db?connect_timeout=5",
                                        &conn, err, sizeof err),
                     OF_MIGRATE_ECONNECT);
    assert_null(conn);
    assert_non_null(strstr(err, "could not connect to PostgreSQL"));
    assert_null(strstr(err, "sekrit"));
}

static void test_connect_malformed_url(void **state)
{
    PGconn *conn = NULL;
    char err[OF_MIGRATE_ERRSIZE] = "";
    assert_int_equal(of_migrate_connect("postgresql://h/db?nosuchoption=1", &conn, err, sizeof err),
                     OF_MIGRATE_EARG);
    assert_null(conn);
    assert_non_null(strstr(err, "invalid database URL"));
    assert_int_equal(of_migrate_connect("", &conn, err, sizeof err), OF_MIGRATE_EARG);
}

static void test_operations_reject_missing_arguments(void **state)
{
    of_migration_set set = {0};
    char err[OF_MIGRATE_ERRSIZE] = "";
    assert_int_equal(of_migrate_up(NULL, &set, -1, stdout, err, sizeof err), OF_MIGRATE_EARG);
    assert_int_equal(of_migrate_down(NULL, &set, 0, stdout, err, sizeof err), OF_MIGRATE_EARG);
    assert_int_equal(of_migrate_status(NULL, &set, stdout, err, sizeof err), OF_MIGRATE_EARG);
    assert_int_equal(of_migrate_verify(NULL, &set, stdout, err, sizeof err), OF_MIGRATE_EARG);
    assert_non_null(strstr(err, "missing argument"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid_names),
        cmocka_unit_test(test_parse_ignored_names),
        cmocka_unit_test(test_parse_bad_names),
        cmocka_unit_test(test_set_sorted_numerically_with_gaps),
        cmocka_unit_test(test_set_empty),
        cmocka_unit_test(test_set_duplicate_versions),
        cmocka_unit_test(test_set_down_without_up),
        cmocka_unit_test(test_set_down_name_mismatch),
        cmocka_unit_test(test_set_bad_name_fails_whole_set),
        cmocka_unit_test(test_load_directory),
        cmocka_unit_test(test_load_missing_directory),
        cmocka_unit_test(test_connect_refused_is_unavailable),
        cmocka_unit_test(test_connect_malformed_url),
        cmocka_unit_test(test_operations_reject_missing_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
