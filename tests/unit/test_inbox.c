/* test_inbox.c: unit tests of the inbox's statements: the batch's check, the lookup in its result,
 * and the record of an applied event. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "orderflow/inbox.h"

static void test_check(void **state)
{
    const char *ids[3] = {"a", "b\"c", "d\\e"};
    of_db_pipeline p;
    of_db_pipeline_init(&p);
    assert_int_equal(of_inbox_add_check(&p, "worker-1", ids, 3), OF_OK);
    assert_int_equal(p.n, 1);
    assert_string_equal(p.cmds[0].stmt, "of_inbox_check");
    assert_string_equal(p.cmds[0].values[0], "worker-1");
    /* Quotes and backslashes escaped, so an id can never widen the array. */
    assert_string_equal(p.cmds[0].values[1], "{\"a\",\"b\\\"c\",\"d\\\\e\"}");
    /* No pending id: an empty array, still one command (its result is read by index). */
    assert_int_equal(of_inbox_add_check(&p, "worker-1", ids, 0), OF_OK);
    assert_string_equal(p.cmds[1].values[1], "{}");
    of_db_pipeline_free(&p);
}

static void test_result_has(void **state)
{
    PGresAttDesc attr;
    PGresult *r = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    memset(&attr, 0, sizeof attr);
    attr.name = (char *)"ce_id";
    attr.typid = 25;
    attr.typlen = -1;
    assert_int_equal(PQsetResultAttrs(r, 1, &attr), 1);
    assert_int_equal(PQsetvalue(r, 0, 0, (char *)"ev-1", 4), 1);
    assert_int_equal(PQsetvalue(r, 1, 0, (char *)"ev-3", 4), 1);
    assert_true(of_inbox_result_has(r, "ev-1"));
    assert_true(of_inbox_result_has(r, "ev-3"));
    assert_false(of_inbox_result_has(r, "ev-2"));
    assert_false(of_inbox_result_has(r, "ev-"));
    assert_false(of_inbox_result_has(NULL, "ev-1"));
    PQclear(r);
}

static void test_record(void **state)
{
    of_db_pipeline p;
    of_db_rows r;
    of_db_pipeline_init(&p);
    assert_int_equal(of_db_rows_init(&r, OF_INBOX_ROWS_STMT, OF_INBOX_ROWS_COLS), OF_OK);
    assert_int_equal(
        of_inbox_rows_add(&r, "w", "ev-9", "thing.made", "things", INT32_MAX, INT64_MAX), OF_OK);
    assert_int_equal(of_inbox_rows_add(&r, "w", "ev-\"10\"", NULL, "things", 0, 7), OF_OK);
    assert_int_equal(of_db_rows_flush(&r, &p), OF_OK);
    assert_int_equal(r.n, 0);
    /* Two rows, one statement: a column is one array literal, escaped. */
    assert_int_equal(p.n, 1);
    const of_db_cmd *c = &p.cmds[0];
    assert_string_equal(c->stmt, "of_inbox_insert_rows");
    assert_int_equal(c->nparams, 6);
    assert_string_equal(c->values[0], "{\"w\",\"w\"}");
    assert_string_equal(c->values[1], "{\"ev-9\",\"ev-\\\"10\\\"\"}");
    assert_string_equal(c->values[2], "{\"thing.made\",NULL}");
    assert_string_equal(c->values[4], "{\"2147483647\",\"0\"}");
    assert_string_equal(c->values[5], "{\"9223372036854775807\",\"7\"}");
    /* An empty set adds nothing. */
    assert_int_equal(of_db_rows_flush(&r, &p), OF_OK);
    assert_int_equal(p.n, 1);
    /* The statements the runtime prepares include the check and the set. */
    assert_int_equal(of_inbox_n_stmts, 2);
    assert_string_equal(of_inbox_stmts[0].name, "of_inbox_check");
    assert_string_equal(of_inbox_stmts[1].name, "of_inbox_insert_rows");
    of_db_rows_free(&r);
    of_db_pipeline_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_result_has),
        cmocka_unit_test(test_record),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
