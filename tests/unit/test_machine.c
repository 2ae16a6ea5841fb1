/* test_machine.c: unit tests of the transition tables (every row, every illegal pair),
 * of_machine_validate on broken tables, and of_machine_apply's SQL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "domain/order_machine.h"
#include "domain/return_machine.h"
#include "orderflow/machine.h"
#include "orderflow/worker.h"

static const of_machine *const machines[] = {&of_order_machine, &of_return_machine};

static void test_domain_machines_validate(void **state)
{
    char err[256] = "";
    for (size_t i = 0; i < sizeof machines / sizeof machines[0]; i++) {
        if (of_machine_validate(machines[i], err, sizeof err) != OF_OK)
            fail_msg("the %s machine is invalid: %s", machines[i]->name, err);
    }
}

/* Every row is found by its (from, trigger) and allowed; every other
 * (from, trigger) pair has no row. */
static void test_rows_and_illegal_pairs(void **state)
{
    for (size_t k = 0; k < sizeof machines / sizeof machines[0]; k++) {
        const of_machine *m = machines[k];
        size_t legal = 0, illegal = 0;
        for (size_t i = 0; i < m->n_rows; i++) {
            const of_transition *t = &m->rows[i];
            size_t n = 0;
            const of_transition *first = of_machine_find(m, t->from, t->trigger, &n);
            assert_non_null(first);
            assert_true(first <= t && t < first + n);
            assert_true(of_machine_allows(m, t->from, t->trigger, t->to));
            assert_false(of_machine_allows(m, t->from, t->trigger, OF_STATE_NONE));
        }
        for (int from = 0; from < (int)m->n_states; from++) {
            for (int trigger = 0; trigger < (int)m->n_triggers; trigger++) {
                size_t n = 0;
                const of_transition *t = of_machine_find(m, from, trigger, &n);
                if (t == NULL) {
                    illegal++;
                    for (int to = 0; to < (int)m->n_states; to++)
                        assert_false(of_machine_allows(m, from, trigger, to));
                } else {
                    legal += n;
                }
            }
        }
        assert_int_equal(legal, m->n_rows);
        assert_true(illegal > 0);
    }
    /* The order machine: 11 states x 9 triggers, 13 (from, trigger) pairs legal. */
    size_t pairs = 0;
    for (int from = 0; from < OF_ORDER_STATUS_COUNT; from++)
        for (int trigger = 0; trigger < OF_ORDER_TRIGGER_COUNT; trigger++)
            pairs += of_machine_find(&of_order_machine, from, trigger, NULL) != NULL;
    assert_int_equal(pairs, 13);
}

static void test_names(void **state)
{
    int st = -1;
    assert_int_equal(of_machine_state_parse(&of_order_machine, "PAID", &st), OF_OK);
    assert_int_equal(st, OF_ORDER_PAID);
    assert_int_equal(of_machine_state_parse(&of_order_machine, "paid", &st), OF_EINVAL);
    assert_int_equal(of_machine_state_parse(&of_order_machine, "", &st), OF_EINVAL);
    assert_string_equal(of_machine_state_name(&of_order_machine, OF_ORDER_CONFIRMED), "CONFIRMED");
    assert_string_equal(of_machine_state_name(&of_order_machine, 99), "?");
    assert_string_equal(of_machine_trigger_name(&of_order_machine, OF_ORDER_T_PAYMENT_TIMEOUT),
                        "PAYMENT_TIMEOUT");
    assert_string_equal(of_machine_trigger_name(&of_return_machine, OF_RETURN_T_AUTO), "auto");
    assert_int_equal(of_order_update_trigger(OF_ORDER_SHIPPED), OF_ORDER_T_SHIPPED);
    assert_int_equal(of_order_update_trigger(OF_ORDER_CONFIRMED), -1);
    char name[64];
    assert_string_equal(of_machine_stmt(&of_return_machine, OF_SQL_HISTORY, name, sizeof name),
                        "return_history");
}

/* A copy of the order machine whose rows a test may break. */
static of_transition rows[32];
static of_machine broken;

static void copy_order_machine(void)
{
    memcpy(rows, of_order_machine.rows, of_order_machine.n_rows * sizeof rows[0]);
    broken = of_order_machine;
    broken.rows = rows;
}

static void assert_invalid(const char *want)
{
    char err[256] = "";
    assert_int_equal(of_machine_validate(&broken, err, sizeof err), OF_EINVAL);
    if (strstr(err, want) == NULL)
        fail_msg("reason \"%s\" does not say \"%s\"", err, want);
}

static void test_validate_rejects(void **state)
{
    copy_order_machine();
    rows[3].to = OF_ORDER_STATUS_COUNT; /* a state the machine does not name */
    assert_invalid("is not a state of the order machine");

    copy_order_machine();
    rows[5].trigger = OF_ORDER_TRIGGER_COUNT + 3;
    assert_invalid("is not one of the order machine");

    copy_order_machine();
    rows[2].step = OF_ORDER_STEP_APPLY_RETURN; /* (CREATED, auto) rows disagree on the step */
    assert_invalid("differ in step or execution");

    copy_order_machine();
    of_transition t = rows[1]; /* (NONE, created) rows no longer adjacent */
    rows[1] = rows[5];
    rows[5] = t;
    assert_invalid("are not consecutive");

    copy_order_machine();
    rows[4].execution = 0;
    assert_invalid("unknown execution");

    copy_order_machine();
    rows[5].starts = true; /* only a creation starts its execution */
    assert_invalid("only a row from no state starts");

    copy_order_machine();
    broken.n_rows = 10; /* the last rows gone: RETURNED and PARTIALLY_RETURNED unreachable */
    assert_invalid("is never reached");

    copy_order_machine();
    const char *names[OF_ORDER_STATUS_COUNT];
    memcpy(names, of_order_status_names, sizeof names);
    names[OF_ORDER_PAID] = "";
    broken.states = names;
    assert_invalid("has no name");

    copy_order_machine();
    broken.stmts = NULL;
    assert_invalid("lacks");
}

/* of_machine_apply on a test machine without a status event. */
static int step_calls;
static int step_result;
static int step_target;

static int test_step(of_step_ctx *s)
{
    step_calls++;
    if (step_target >= 0)
        s->to = step_target;
    snprintf(s->reason, sizeof s->reason, "because");
    return step_result;
}

static void test_apply(void **state)
{
    of_machine m = of_order_machine;
    m.changed = NULL;
    of_step_impl impls[OF_ORDER_STEP_COUNT] = {
        [OF_ORDER_STEP_UPDATE_INVENTORY] = {true, test_step},
        [OF_ORDER_STEP_RECORD_SHIPMENT] = {true, NULL},
        [OF_ORDER_STEP_ORDER_COMPLETED] = {true, NULL},
    };
    of_worker_item it;
    of_entity e;
    of_applied_list applied = {0};
    of_db_pipeline wp;
    of_db_rows mrows[OF_SQL_COUNT];
    of_step_ctx s;
    memset(&it, 0, sizeof it);
    memset(mrows, 0, sizeof mrows);
    for (int k = OF_SQL_SET_STATE; k < OF_SQL_COUNT; k++)
        assert_int_equal(of_db_rows_init(&mrows[k], m.stmts[k].name,
                                         k == OF_SQL_SET_STATE     ? 5
                                         : k == OF_SQL_EXEC_START  ? 8
                                         : k == OF_SQL_EXEC_UPDATE ? 6
                                                                   : 15),
                         OF_OK);
    it.rec.topic = "t";
    it.rec.partition = 2;
    it.rec.offset = 9;
    memset(&e, 0, sizeof e);
    snprintf(e.id, sizeof e.id, "0190a4e2-0000-7000-8000-000000000001");
    e.state = OF_ORDER_CREATED;
    e.version = 1;
    of_db_pipeline_init(&wp);

#define RESET()                                                                                    \
    do {                                                                                           \
        memset(&s, 0, sizeof s);                                                                   \
        s.m = &m;                                                                                  \
        s.it = &it;                                                                                \
        s.wp = &wp;                                                                                \
        s.mrows = mrows;                                                                           \
        s.e = &e;                                                                                  \
        s.applied = &applied;                                                                      \
        of_db_pipeline_reset(&wp);                                                                 \
        for (int k = OF_SQL_SET_STATE; k < OF_SQL_COUNT; k++)                                      \
            of_db_rows_clear(&mrows[k]);                                                           \
        step_calls = 0;                                                                            \
    } while (0)

/* The machine's row sets as statements, in a wave's sequence. */
#define FLUSH()                                                                                    \
    do {                                                                                           \
        static const int wave[] = {OF_SQL_EXEC_START, OF_SQL_EXEC_UPDATE, OF_SQL_SET_STATE,        \
                                   OF_SQL_HISTORY};                                                \
        for (size_t k = 0; k < sizeof wave / sizeof wave[0]; k++)                                  \
            assert_int_equal(of_db_rows_flush(&mrows[wave[k]], &wp), OF_OK);                       \
    } while (0)

    /* Two targets for (CREATED, auto): the step must choose. */
    RESET();
    step_result = OF_OK;
    step_target = -1;
    assert_int_equal(of_machine_apply(&s, impls, OF_ORDER_T_AUTO), OF_ESTATE);
    assert_int_equal(e.state, OF_ORDER_CREATED);
    of_step_ctx_free(&s);

    /* A target the table does not allow. */
    RESET();
    step_target = OF_ORDER_PAID;
    assert_int_equal(of_machine_apply(&s, impls, OF_ORDER_T_AUTO), OF_ESTATE);
    of_step_ctx_free(&s);

    /* The step's own error comes back unchanged, nothing moves. */
    RESET();
    step_target = OF_ORDER_INVENTORY_RESERVED;
    step_result = OF_ERANGE;
    assert_int_equal(of_machine_apply(&s, impls, OF_ORDER_T_AUTO), OF_ERANGE);
    assert_int_equal(e.version, 1);
    assert_int_equal(applied.n, 0);
    of_step_ctx_free(&s);

    /* Applied: status (guarded by the version), execution, history; the
     * entity advances and the transition is listed. */
    RESET();
    step_result = OF_OK;
    step_target = OF_ORDER_REJECTED;
    assert_int_equal(of_machine_apply(&s, impls, OF_ORDER_T_AUTO), OF_OK);
    assert_int_equal(step_calls, 1);
    FLUSH();
    assert_int_equal(wp.n, 3);
    assert_string_equal(wp.cmds[0].stmt, "order_exec_update");
    assert_string_equal(wp.cmds[0].values[0], "{\"OrderProcess\"}");
    assert_string_equal(wp.cmds[0].values[4], "{\"FAILED\"}");
    assert_string_equal(wp.cmds[0].values[5], "{\"because\"}"); /* a failure records its reason */
    assert_string_equal(wp.cmds[1].stmt, "order_set_state");
    assert_string_equal(wp.cmds[1].values[1], "{\"REJECTED\"}");
    assert_string_equal(wp.cmds[1].values[2], "{\"1\"}");
    assert_string_equal(wp.cmds[2].stmt, "order_history");
    assert_string_equal(wp.cmds[2].values[3], "{\"UpdateInventory\"}");
    assert_string_equal(wp.cmds[2].values[4], "{\"CREATED\"}");
    assert_string_equal(wp.cmds[2].values[5], "{\"REJECTED\"}");
    assert_string_equal(wp.cmds[2].values[9], "{\"2\"}");
    assert_string_equal(wp.cmds[2].values[10], "{\"9\"}");
    /* No trace anywhere: the step is the root of a new one, and the order
     * keeps its span. */
    char want[128];
    assert_int_equal(strlen(s.trace.trace_id), 32);
    assert_int_equal(strlen(s.trace.span_id), 16);
    assert_string_equal(s.parent_span, "");
    snprintf(want, sizeof want, "{\"%s\"}", s.trace.trace_id);
    assert_string_equal(wp.cmds[2].values[12], want);
    snprintf(want, sizeof want, "{\"%s\"}", s.trace.span_id);
    assert_string_equal(wp.cmds[2].values[13], want);
    assert_string_equal(wp.cmds[2].values[14], "{NULL}");
    snprintf(want, sizeof want, "{\"00-%s-%s-01\"}", s.trace.trace_id, s.trace.span_id);
    assert_string_equal(wp.cmds[1].values[4], want);
    assert_memory_equal(&e.trace, &s.trace, sizeof e.trace);
    assert_int_equal(e.state, OF_ORDER_REJECTED);
    assert_int_equal(e.version, 2);
    assert_int_equal(applied.n, 1);
    assert_int_equal(applied.v[0].t->to, OF_ORDER_REJECTED);
    of_step_ctx_free(&s);

    /* No row for (REJECTED, PAID): OF_EILLEGAL and nothing appended. */
    RESET();
    assert_int_equal(of_machine_apply(&s, impls, OF_ORDER_T_PAID), OF_EILLEGAL);
    FLUSH();
    assert_int_equal(wp.n, 0);
    of_step_ctx_free(&s);

    /* A step this worker does not run. */
    RESET();
    e.state = OF_ORDER_CONFIRMED;
    assert_int_equal(of_machine_apply(&s, impls, OF_ORDER_T_PAID), OF_ESTATE);
    assert_false(of_machine_runs(&m, impls, OF_ORDER_CONFIRMED, OF_ORDER_T_PAID));
    of_step_ctx_free(&s);

    /* A step with no function only moves the status. */
    RESET();
    e.state = OF_ORDER_PAID;
    assert_true(of_machine_runs(&m, impls, OF_ORDER_PAID, OF_ORDER_T_SHIPPED));
    assert_int_equal(of_machine_apply(&s, impls, OF_ORDER_T_SHIPPED), OF_OK);
    assert_int_equal(e.state, OF_ORDER_SHIPPED);
    assert_int_equal(step_calls, 0);
    of_step_ctx_free(&s);

    /* A step that starts a second execution: its Start row is a child span
     * of the step's, on the event's trace. */
    RESET();
    e.state = OF_ORDER_INVENTORY_RESERVED;
    it.parsed = true;
    it.ev.has_trace =
        of_trace_parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", 55, &it.ev.trace);
    assert_int_equal(of_machine_apply(&s, impls, OF_ORDER_T_AUTO), OF_OK);
    FLUSH();
    assert_string_equal(s.trace.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_string_equal(s.parent_span, "00f067aa0ba902b7");
    for (size_t i = 0; i < wp.n; i++) {
        if (strcmp(wp.cmds[i].stmt, "order_history") != 0)
            continue;
        assert_string_equal(wp.cmds[i].values[3], "{\"OrderCompleted\",\"Start\"}");
        snprintf(want, sizeof want, "{\"%s\",\"%s\"}", s.trace.trace_id, s.trace.trace_id);
        assert_string_equal(wp.cmds[i].values[12], want);
        assert_int_equal(strlen(wp.cmds[i].values[13]), 2 + 2 * 18 + 1);
        assert_memory_equal(wp.cmds[i].values[13] + 2, s.trace.span_id, 16);
        assert_memory_not_equal(wp.cmds[i].values[13] + 21, s.trace.span_id, 16);
        snprintf(want, sizeof want, "{\"00f067aa0ba902b7\",\"%s\"}", s.trace.span_id);
        assert_string_equal(wp.cmds[i].values[14], want);
    }
    it.parsed = false;
    memset(&it.ev, 0, sizeof it.ev);
    e.state = OF_ORDER_SHIPPED;
    of_step_ctx_free(&s);

    /* A rejected update is a history row only, with the trigger as its step. */
    RESET();
    assert_int_equal(of_machine_record(&s, "rejected", "PAID", "PAID is not allowed from SHIPPED"),
                     OF_OK);
    FLUSH();
    assert_int_equal(wp.n, 1);
    assert_string_equal(wp.cmds[0].values[0], "{\"\"}");
    assert_string_equal(wp.cmds[0].values[3], "{\"PAID\"}");
    assert_string_equal(wp.cmds[0].values[6], "{\"rejected\"}");
    assert_string_equal(wp.cmds[0].values[5], "{NULL}");
    of_step_ctx_free(&s);
#undef RESET
#undef FLUSH
    for (int k = OF_SQL_SET_STATE; k < OF_SQL_COUNT; k++)
        of_db_rows_free(&mrows[k]);
    free(applied.v);
    of_db_pipeline_free(&wp);
}

static void test_render(void **state)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    of_machine_render(&of_return_machine, OF_RENDER_MERMAID, f);
    fclose(f);
    assert_non_null(strstr(buf, "[*] --> INITIATED : return.requested / InitiateReturn"));
    assert_non_null(strstr(buf, "REFUND_PROCESSED --> REFUND_COMPLETED : auto / RefundCompleted"));
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_domain_machines_validate),
        cmocka_unit_test(test_rows_and_illegal_pairs),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_validate_rejects),
        cmocka_unit_test(test_apply),
        cmocka_unit_test(test_render),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
