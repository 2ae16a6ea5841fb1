/* test_db.c: unit tests of the db module's pure parts (array literals, SQLSTATE
 * classes, pipeline commands); the connection is tested in tests/integration. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "orderflow/db.h"

/* One text[] literal case: items and the expected literal. */
typedef struct array_case {
    const char *items[4]; /* items */
    size_t n;             /* number of items */
    const char *want;     /* expected literal */
} array_case;

static void test_text_array(void **state)
{
    static const array_case cases[] = {
        {{NULL}, 0, "{}"},
        {{""}, 1, "{\"\"}"},
        {{"", ""}, 2, "{\"\",\"\"}"},
        {{"a"}, 1, "{\"a\"}"},
        {{"a", "b", "c"}, 3, "{\"a\",\"b\",\"c\"}"},
        {{"say \"hi\""}, 1, "{\"say \\\"hi\\\"\"}"},
        {{"back\\slash"}, 1, "{\"back\\\\slash\"}"},
        {{"\\\"", "\"\\"}, 2, "{\"\\\\\\\"\",\"\\\"\\\\\"}"},
        {{"NULL", "{x,y}", " sp "}, 3, "{\"NULL\",\"{x,y}\",\" sp \"}"},
        {{"0190a6c4-7a3b-7cde-8f01-23456789abcd"}, 1, "{\"0190a6c4-7a3b-7cde-8f01-23456789abcd\"}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *got = of_db_text_array(cases[i].items, cases[i].n);
        assert_non_null(got);
        if (strcmp(got, cases[i].want) != 0)
            fail_msg("case %zu: got %s, want %s", i, got, cases[i].want);
        free(got);
    }
}

static void test_text_array_worst_case_size(void **state)
{
    /* Every character escaped: the literal is exactly twice the input plus
     * the quotes and braces, and ASan checks the buffer was big enough. */
    char item[257];
    memset(item, '"', 256);
    item[256] = '\0';
    const char *items[3] = {item, item, item};
    char *got = of_db_text_array(items, 3);
    assert_non_null(got);
    assert_int_equal(strlen(got), 2 + 3 * (2 + 512) + 2);
    assert_int_equal(got[0], '{');
    assert_int_equal(got[strlen(got) - 1], '}');
    free(got);
}

/* One SQLSTATE case. */
typedef struct sqlstate_case {
    const char *state; /* SQLSTATE */
    bool transient;    /* expected of_db_sqlstate_transient() */
} sqlstate_case;

static void test_sqlstate_transient(void **state)
{
    static const sqlstate_case cases[] = {
        {"08000", true},  {"08003", true},  {"08006", true},  {"08P01", true},  {"40001", true},
        {"40P01", true},  {"53000", true},  {"53100", true},  {"53200", true},  {"53300", true},
        {"55P03", true},  {"57014", true},  {"57P01", true},  {"57P02", true},  {"57P03", true},
        {"23505", false}, {"23503", false}, {"23514", false}, {"22P02", false}, {"42P01", false},
        {"42703", false}, {"40002", false}, {"40003", false}, {"55000", false}, {"57000", false},
        {"57P04", false}, {"P0001", false}, {"XX000", false}, {"0800", false},  {"080000", false},
        {"", false},      {NULL, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (of_db_sqlstate_transient(cases[i].state) != cases[i].transient)
            fail_msg("case %zu \"%s\": expected %s", i, cases[i].state ? cases[i].state : "(null)",
                     cases[i].transient ? "transient" : "permanent");
    }
}

static void test_pipeline_init(void **state)
{
    of_db_pipeline p;
    memset(&p, 0xab, sizeof p);
    of_db_pipeline_init(&p);
    assert_int_equal(p.n, 0);
    assert_null(p.cmds);
    assert_null(p.results);
    assert_int_equal(p.failed_index, -1);
    assert_int_equal(p.session, 0);
    assert_null(p.next);
    assert_null(of_db_pipeline_result(&p, 0));
    of_db_pipeline_free(&p);
}

static void test_pipeline_copies_params(void **state)
{
    of_db_pipeline p;
    char stmt[] = "of_test_insert";
    char a[] = "alpha";
    char b[] = "beta";
    char sql[] = "select $1::text";
    const char *values[3] = {a, NULL, b};
    of_db_pipeline_init(&p);
    assert_int_equal(of_db_pipeline_add(&p, stmt, 3, values), OF_OK);
    assert_int_equal(of_db_pipeline_add_sql(&p, sql, 1, values), OF_OK);
    assert_int_equal(of_db_pipeline_add(&p, "of_test_noparams", 0, NULL), OF_OK);
    /* Overwrite every caller buffer: the pipeline must keep the old values. */
    memset(stmt, 'X', sizeof stmt - 1);
    memset(a, 'X', sizeof a - 1);
    memset(b, 'X', sizeof b - 1);
    memset(sql, 'X', sizeof sql - 1);
    assert_int_equal(p.n, 3);

    of_db_cmd *c = &p.cmds[0];
    assert_string_equal(c->stmt, "of_test_insert");
    assert_ptr_not_equal(c->stmt, stmt);
    assert_null(c->sql);
    assert_int_equal(c->nparams, 3);
    assert_string_equal(c->values[0], "alpha");
    assert_ptr_not_equal(c->values[0], a);
    assert_null(c->values[1]); /* SQL NULL stays NULL */
    assert_string_equal(c->values[2], "beta");
    assert_int_equal(c->lengths[0], 5);
    assert_int_equal(c->lengths[2], 4);
    for (int i = 0; i < 3; i++)
        assert_int_equal(c->formats[i], 0);

    c = &p.cmds[1];
    assert_null(c->stmt);
    assert_string_equal(c->sql, "select $1::text");
    assert_ptr_not_equal(c->sql, sql);
    assert_int_equal(c->nparams, 1);
    assert_string_equal(c->values[0], "alpha");

    c = &p.cmds[2];
    assert_string_equal(c->stmt, "of_test_noparams");
    assert_int_equal(c->nparams, 0);
    assert_null(c->values);
    of_db_pipeline_free(&p);
}

static void test_pipeline_binary_params(void **state)
{
    of_db_pipeline p;
    char bin[] = {'k', '\0', 'e', '\0', (char)0xff, 'y'};
    char empty[1] = {'Z'};
    const char *values[4] = {"text\0tail", bin, empty, NULL};
    const int lengths[4] = {999, (int)sizeof bin, 0, 0};
    const int formats[4] = {0, 1, 1, 1};
    of_db_pipeline_init(&p);
    assert_int_equal(of_db_pipeline_add_bin(&p, "of_test_bin", 4, values, lengths, formats), OF_OK);
    memset(bin, 'X', sizeof bin);
    of_db_cmd *c = &p.cmds[0];
    assert_int_equal(c->nparams, 4);
    /* A text parameter is measured with strlen (its given length is ignored). */
    assert_int_equal(c->formats[0], 0);
    assert_int_equal(c->lengths[0], 4);
    assert_string_equal(c->values[0], "text");
    /* A binary one keeps its length and its embedded NULs. */
    assert_int_equal(c->formats[1], 1);
    assert_int_equal(c->lengths[1], 6);
    assert_memory_equal(c->values[1], "k\0e\0\xffy", 6);
    /* An empty binary value is a zero-length value, not SQL NULL. */
    assert_non_null(c->values[2]);
    assert_int_equal(c->lengths[2], 0);
    assert_int_equal(c->formats[2], 1);
    assert_null(c->values[3]);
    of_db_pipeline_free(&p);
}

static void test_pipeline_reset_and_free(void **state)
{
    of_db_pipeline p;
    const char *values[1] = {"v"};
    of_db_pipeline_init(&p);
    /* More commands than the first allocation, so the array grows. */
    for (int i = 0; i < 40; i++) {
        char name[32];
        snprintf(name, sizeof name, "stmt_%d", i);
        assert_int_equal(of_db_pipeline_add(&p, name, 1, values), OF_OK);
    }
    assert_int_equal(p.n, 40);
    assert_true(p.cap >= 40);
    for (int i = 0; i < 40; i++) {
        char name[32];
        snprintf(name, sizeof name, "stmt_%d", i);
        assert_string_equal(p.cmds[i].stmt, name);
    }
    /* Pretend a run happened, so reset has state and results to clear. */
    p.results = calloc(p.n, sizeof *p.results);
    assert_non_null(p.results);
    p.results[3] = PQmakeEmptyPGresult(NULL, PGRES_COMMAND_OK);
    assert_non_null(p.results[3]);
    assert_ptr_equal(of_db_pipeline_result(&p, 3), p.results[3]);
    assert_null(of_db_pipeline_result(&p, 40));
    p.status = OF_ESQL;
    p.failed_index = 7;
    snprintf(p.sqlstate, sizeof p.sqlstate, "23505");
    snprintf(p.error, sizeof p.error, "duplicate key");
    p.cur = 9;
    p.cur_has_result = true;
    size_t cap = p.cap;
    of_db_cmd *cmds = p.cmds;

    of_db_pipeline_reset(&p);
    assert_int_equal(p.n, 0);
    assert_int_equal(p.cap, cap); /* the allocation is kept for reuse */
    assert_ptr_equal(p.cmds, cmds);
    assert_null(p.results);
    assert_int_equal(p.status, 0);
    assert_int_equal(p.failed_index, -1);
    assert_string_equal(p.sqlstate, "");
    assert_string_equal(p.error, "");
    assert_int_equal(p.cur, 0);
    assert_false(p.cur_has_result);
    assert_null(of_db_pipeline_result(&p, 3));

    /* Reused after reset: new commands, nothing left of the old ones. */
    assert_int_equal(of_db_pipeline_add(&p, "again", 1, values), OF_OK);
    assert_int_equal(p.n, 1);
    assert_string_equal(p.cmds[0].stmt, "again");
    of_db_pipeline_free(&p);
    assert_null(p.cmds);
    assert_int_equal(p.cap, 0);
    assert_int_equal(p.n, 0);
    /* free after free is harmless */
    of_db_pipeline_free(&p);
}

/* A connection string that does not parse is refused without libpq's message;
 * the password of one that does is known, to be scrubbed from messages. */
static void test_conninfo_check_and_scrub(void **state)
{
    char *pw = NULL;
    char msg[128];
    assert_int_equal(of_db_conninfo_check("postgresql://u:p%25%40ss@h/db", &pw), OF_OK);
    assert_non_null(pw);
    assert_string_equal(pw, "p%@ss");
    snprintf(msg, sizeof msg, "FATAL: something quoting \"p%%@ss\" twice: p%%@ss.");
    of_db_scrub(msg, pw);
    assert_string_equal(msg, "FATAL: something quoting \"****\" twice: ****.");
    free(pw);
    assert_int_equal(of_db_conninfo_check("host=h password='a b'", &pw), OF_OK);
    assert_string_equal(pw, "a b");
    snprintf(msg, sizeof msg, "x a b y");
    of_db_scrub(msg, pw); /* shorter than the mask: masked in place */
    assert_string_equal(msg, "x *** y");
    free(pw);
    assert_int_equal(of_db_conninfo_check("postgresql://u@h/db", &pw), OF_OK);
    assert_null(pw);
    of_db_scrub(msg, NULL);
    /* libpq refuses an invalid percent-encoding (and would quote it). */
    assert_int_equal(of_db_conninfo_check("postgresql://u:p%zz@h/db", &pw), OF_EINVAL);
    assert_null(pw);
    assert_int_equal(of_db_conninfo_check("host=h password='unterminated", NULL), OF_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_array),
        cmocka_unit_test(test_text_array_worst_case_size),
        cmocka_unit_test(test_sqlstate_transient),
        cmocka_unit_test(test_pipeline_init),
        cmocka_unit_test(test_pipeline_copies_params),
        cmocka_unit_test(test_pipeline_binary_params),
        cmocka_unit_test(test_pipeline_reset_and_free),
        cmocka_unit_test(test_conninfo_check_and_scrub),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
