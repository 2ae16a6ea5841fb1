/* test_apply.c: unit tests of the per-batch routine (apply.c) and of the failure classes
 * (batch_fail.c).
 *
 * The routine runs on load results built in memory (libpq can make a
 * PGresult without a server), so each rule is checked on its own: unknown
 * entities are dead-lettered with the machine's code, the auto-advance rule
 * ignores stale events, expected_version and illegal triggers are recorded
 * as rejected or ignored, entities advance in memory across a batch, a
 * failing step names its event, and every history row is a span of the
 * right trace (the event's, the entity's, the scope's or a new one). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "worker_internal.h"

enum { S_NONE, S_NEW, S_DONE, S_STATES };
enum { T_AUTO = OF_TRIGGER_AUTO, T_CREATE, T_FINISH, T_TRIGGERS };
enum { STEP_CREATE, STEP_FINISH, STEP_SKIP, STEPS };
enum { X_NONE, X_RUN, XS };

// clang-format off
static const of_transition rows[] = {
    /* from   trigger   to      step         execution starts  after              then */
    {S_NONE,  T_CREATE, S_NEW,  STEP_CREATE, X_RUN,    true,   OF_EXEC_RUNNING,   OF_EXEC_NONE},
    {S_NEW,   T_AUTO,   S_DONE, STEP_SKIP,   X_RUN,    false,  OF_EXEC_SUCCEEDED, OF_EXEC_NONE},
    {S_NEW,   T_FINISH, S_DONE, STEP_FINISH, X_RUN,    false,  OF_EXEC_SUCCEEDED, OF_EXEC_NONE},
};
// clang-format on

static const char *const states[S_STATES] = {"", "NEW", "DONE"};
static const char *const triggers[T_TRIGGERS] = {"auto", "create", "FINISH"};
static const char *const steps[STEPS] = {"Create", "Finish", "Skip"};
static const char *const executions[XS] = {"", "Run"};
static const of_db_stmt stmts[OF_SQL_COUNT] = {
    {"gadget_load", "-", false},       {"gadget_set_state", "-", false},
    {"gadget_exec_start", "-", false}, {"gadget_exec_update", "-", false},
    {"gadget_history", "-", false},
};
static const of_machine gadget = {
    .name = "gadget",
    .entity = "gadget",
    .rows = rows,
    .n_rows = sizeof rows / sizeof rows[0],
    .states = states,
    .n_states = S_STATES,
    .triggers = triggers,
    .n_triggers = T_TRIGGERS,
    .steps = steps,
    .n_steps = STEPS,
    .executions = executions,
    .n_executions = XS,
    .stmts = stmts,
};

static int finish_fails; /* Finish returns this */

static int finish(of_step_ctx *s)
{
    return finish_fails;
}

static const of_step_impl impls[STEPS] = {
    [STEP_CREATE] = {true, NULL},
    [STEP_FINISH] = {true, finish},
    [STEP_SKIP] = {true, NULL},
};

static int shelf_1; /* the one scope entity that exists */

static void *find_scope(void *state, const char *id)
{
    return strcmp(id, "scope-1") == 0 ? &shelf_1 : NULL;
}

static void explain(const char *state, char *buf, size_t size)
{
    snprintf(buf, size, "too late in %s", state);
}

static const of_worker_handler handler = {
    .name = "gadgets",
    .machine = &gadget,
    .steps = impls,
    .find_scope = find_scope,
};

#define ID_A "00000000-0000-7000-8000-00000000000a"
#define ID_B "00000000-0000-7000-8000-00000000000b"
#define ID_C "00000000-0000-7000-8000-00000000000c"

/* Trace ids and spans: A's last step, an event's sender, scope-1's last step. */
#define TRACE_A  "0af7651916cd43dd8448eb211c80319c"
#define SPAN_A   "b7ad6b7169203331"
#define TRACE_EV "4bf92f3577b34da6a3ce929d0e0e4736"
#define SPAN_EV  "00f067aa0ba902b7"
#define TRACE_SC "11111111111111112222222222222222"
#define SPAN_SC  "3333333333333333"

/* A status event for the traced machine, so that a step publishes. */
static int gadget_changed(of_step_ctx *s, int from, int to, of_message *out)
{
    of_event_attrs attrs = {"ev-out", "gadget.changed", "test/gadgets", s->e->id, NULL};
    cJSON *data = cJSON_CreateObject();
    of_event_error err;
    int rc =
        data != NULL ? of_event_build(out, "gadgets", s->e->id, &attrs, data, &err) : OF_ENOMEM;
    cJSON_Delete(data);
    return rc;
}

static const of_machine traced = {
    .name = "gadget",
    .entity = "gadget",
    .rows = rows,
    .n_rows = sizeof rows / sizeof rows[0],
    .states = states,
    .n_states = S_STATES,
    .triggers = triggers,
    .n_triggers = T_TRIGGERS,
    .steps = steps,
    .n_steps = STEPS,
    .executions = executions,
    .n_executions = XS,
    .stmts = stmts,
    .changed = gadget_changed,
};

static const char *scope_trace(void *scope)
{
    return "00-" TRACE_SC "-" SPAN_SC "-00";
}

static const of_worker_handler traced_handler = {
    .name = "gadgets",
    .machine = &traced,
    .steps = impls,
    .find_scope = find_scope,
    .scope_trace = scope_trace,
};

/* The machine's load result: id, status, version, correlation, scope, traceparent. */
static PGresult *entities(void)
{
    enum { COLS = 6, ROWS = 3 };
    PGresAttDesc attrs[COLS];
    const char *names[COLS] = {"id", "status", "version", "correlation", "scope", "traceparent"};
    const char *data[ROWS][COLS] = {
        {ID_A, "NEW", "1", "c-a", "", "00-" TRACE_A "-" SPAN_A "-01"},
        {ID_B, "BROKEN", "4", "c-b", "", ""},
        {ID_C, "NEW", "1", "c-c", "", ""},
    };
    PGresult *r = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    memset(attrs, 0, sizeof attrs);
    for (int c = 0; c < COLS; c++) {
        attrs[c].name = (char *)names[c];
        attrs[c].typid = 25;
        attrs[c].typlen = -1;
    }
    assert_int_equal(PQsetResultAttrs(r, COLS, attrs), 1);
    for (int row = 0; row < ROWS; row++)
        for (int c = 0; c < COLS; c++)
            assert_int_equal(PQsetvalue(r, row, c, (char *)data[row][c], (int)strlen(data[row][c])),
                             1);
    return r;
}

typedef struct fixture {
    const of_worker_handler *h; /* handler; NULL: the plain one */
    of_worker w;
    of_worker_item items[8];
    size_t n;
    of_db_pipeline lp, wp;
    PGresult *results[1];
} fixture;

static void add(fixture *f, of_route r)
{
    of_worker_item *it = &f->items[f->n++];
    memset(it, 0, sizeof *it);
    it->rec.topic = "gadgets";
    it->rec.offset = (int64_t)f->n;
    it->parsed = true;
    snprintf(it->ev.id, sizeof it->ev.id, "ev-%zu", f->n);
    it->route = r;
    it->state = it->initial = OF_ITEM_PENDING;
}

static int run(fixture *f)
{
    of_worker_batch *b = &f->w.batch;
    memset(&f->w, 0, sizeof f->w);
    f->w.h = f->h != NULL ? f->h : &handler;
    assert_int_equal(of_apply_rows_init(&f->w), OF_OK);
    b->w = &f->w;
    b->items = f->items;
    b->n = f->n;
    b->lo = 0;
    b->hi = f->n;
    b->fault = -1;
    b->entity_load = 0;
    b->first_load = 1;
    of_db_pipeline_init(&f->lp);
    of_db_pipeline_init(&f->wp);
    f->results[0] = entities();
    f->lp.results = f->results;
    f->lp.n = 1;
    return of_apply_run(&f->w, b, &f->lp, &f->wp);
}

static void done(fixture *f)
{
    PQclear(f->results[0]);
    f->lp.results = NULL;
    f->lp.n = 0;
    free(f->w.batch.entities);
    free(f->w.batch.applied.v);
    of_batch_free_outbox(&f->w.batch);
    free(f->w.batch.outbox);
    of_apply_rows_free(&f->w);
    of_db_pipeline_free(&f->wp);
}

/* Counts wp commands running statement name. */
static size_t count_stmt(const of_db_pipeline *p, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < p->n; i++)
        n += p->cmds[i].stmt != NULL && strcmp(p->cmds[i].stmt, name) == 0;
    return n;
}

static void test_routes(void **state)
{
    fixture f;
    memset(&f, 0, sizeof f);
    finish_fails = OF_OK;
    /* 1. stale: announces DONE, the gadget is NEW -> ignored, no effect */
    add(&f, (of_route){.kind = OF_ROUTE_ADVANCE, .entity_id = ID_A, .state = S_DONE, .version = 1});
    /* 2. unknown gadget -> UNKNOWN_GADGET */
    add(&f, (of_route){.kind = OF_ROUTE_TRIGGER,
                       .entity_id = "00000000-0000-7000-8000-0000000000ff",
                       .trigger = T_FINISH});
    /* 3. wrong expected version -> rejected */
    add(&f, (of_route){.kind = OF_ROUTE_TRIGGER,
                       .entity_id = ID_A,
                       .trigger = T_FINISH,
                       .has_expected_version = true,
                       .expected_version = 7});
    /* 4. current: NEW v1 -> DONE v2 */
    add(&f, (of_route){.kind = OF_ROUTE_ADVANCE, .entity_id = ID_A, .state = S_NEW, .version = 1});
    /* 5. the same gadget again, now DONE: no row for FINISH -> ignored with the route's reason */
    add(&f, (of_route){.kind = OF_ROUTE_TRIGGER,
                       .entity_id = ID_A,
                       .trigger = T_FINISH,
                       .ignore_illegal = true,
                       .explain = explain});
    /* 6. a status the machine does not know -> dead */
    add(&f, (of_route){.kind = OF_ROUTE_TRIGGER, .entity_id = ID_B, .trigger = T_FINISH});
    /* 7. creation in an unknown scope -> UNKNOWN_SHELF; 8. in a known one -> NEW */
    add(&f, (of_route){.kind = OF_ROUTE_CREATE,
                       .trigger = T_CREATE,
                       .scope_id = "scope-9",
                       .scope_kind = "shelf"});
    add(&f, (of_route){.kind = OF_ROUTE_CREATE,
                       .trigger = T_CREATE,
                       .scope_id = "scope-1",
                       .scope_kind = "shelf"});
    assert_int_equal(run(&f), OF_OK);

    assert_int_equal(f.items[0].state, OF_ITEM_DONE);
    assert_string_equal(f.items[0].outcome, "ignored");
    assert_int_equal(f.items[1].state, OF_ITEM_DEAD);
    assert_string_equal(f.items[1].dlq_code, "UNKNOWN_GADGET");
    assert_string_equal(f.items[1].err.reason,
                        "unknown gadget \"00000000-0000-7000-8000-0000000000ff\"");
    assert_int_equal(f.items[2].state, OF_ITEM_DONE);
    assert_string_equal(f.items[2].outcome, "rejected");
    assert_int_equal(f.items[3].state, OF_ITEM_DONE);
    assert_string_equal(f.items[3].outcome, "applied");
    assert_int_equal(f.items[4].state, OF_ITEM_DONE);
    assert_string_equal(f.items[4].outcome, "ignored");
    assert_int_equal(f.items[5].state, OF_ITEM_DEAD);
    assert_string_equal(f.items[5].dlq_code, "PROCESSING_FAILED");
    assert_int_equal(f.items[6].state, OF_ITEM_DEAD);
    assert_string_equal(f.items[6].dlq_code, "UNKNOWN_SHELF");
    assert_int_equal(f.items[7].state, OF_ITEM_DONE);
    assert_string_equal(f.items[7].outcome, "NEW");

    /* Item 4 moved the gadget once; the history has the rejection (3), the
     * transition (4), the ignored trigger (5) and the creation (8). Items 3,
     * 4 and 5 touch one gadget, so they are three waves, in their sequence:
     * history (3); status, execution, history (4); history (5 and 8). */
    assert_int_equal(count_stmt(&f.wp, "gadget_set_state"), 1);
    assert_int_equal(count_stmt(&f.wp, "gadget_exec_start"), 1);
    assert_int_equal(count_stmt(&f.wp, "gadget_history"), 3);
    assert_int_equal(f.wp.n, 6);
    assert_string_equal(f.wp.cmds[0].stmt, "gadget_history");
    assert_non_null(strstr(f.wp.cmds[0].values[6], "rejected"));
    assert_string_equal(f.wp.cmds[2].stmt, "gadget_set_state");
    assert_string_equal(f.wp.cmds[3].stmt, "gadget_history");
    assert_string_equal(f.wp.cmds[5].stmt, "gadget_history");
    assert_string_equal(f.wp.cmds[5].values[6], "{\"ignored\",\"applied\"}");
    assert_int_equal(f.w.batch.applied.n, 2);
    const of_entity *a = &f.w.batch.entities[0];
    assert_string_equal(a->id, ID_A);
    assert_int_equal(a->state, S_DONE);
    assert_int_equal(a->version, 2);
    /* The reasons in the history: expected version, then the route's explanation. */
    bool saw_version = false, saw_explain = false;
    for (size_t i = 0; i < f.wp.n; i++) {
        const char *detail = f.wp.cmds[i].nparams == 15 ? f.wp.cmds[i].values[11] : NULL;
        saw_version |= detail && strstr(detail, "expected version 7, gadget is at version 1");
        saw_explain |= detail && strstr(detail, "too late in DONE");
    }
    assert_true(saw_version);
    assert_true(saw_explain);
    done(&f);
}

/* Element k of a simple array literal ({"a",NULL,"b"}: no commas or quotes
 * inside elements) into out; "" for NULL, false past the end. */
static bool array_elem(const char *lit, size_t k, char *out, size_t size)
{
    const char *p = lit + 1;
    for (size_t i = 0; i < k; i++) {
        p = strchr(p, ',');
        if (p == NULL)
            return false;
        p++;
    }
    size_t n = strcspn(p, ",}");
    if (n >= 2 && p[0] == '"') {
        p++;
        n -= 2;
    } else if (n == 4 && strncmp(p, "NULL", 4) == 0) {
        n = 0;
    }
    snprintf(out, size, "%.*s", (int)n, p);
    return true;
}

/* One history row: step, outcome, event, trace, span, parent ("" for NULL). */
typedef struct hrow {
    char step[32], outcome[16], event[16], trace[40], span[24], parent[24];
} hrow;

/* Every history row the write pipeline holds, in order. */
static size_t history_rows(const of_db_pipeline *p, hrow *out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < p->n; i++) {
        const of_db_cmd *c = &p->cmds[i];
        if (c->stmt == NULL || strcmp(c->stmt, "gadget_history") != 0)
            continue;
        assert_int_equal(c->nparams, 15);
        for (size_t k = 0; n < max && array_elem(c->values[3], k, out[n].step, 32); k++, n++) {
            assert_true(array_elem(c->values[6], k, out[n].outcome, 16));
            assert_true(array_elem(c->values[7], k, out[n].event, 16));
            assert_true(array_elem(c->values[12], k, out[n].trace, 40));
            assert_true(array_elem(c->values[13], k, out[n].span, 24));
            assert_true(array_elem(c->values[14], k, out[n].parent, 24));
        }
    }
    return n;
}

static bool lower_hex(const char *s, size_t len)
{
    if (strlen(s) != len)
        return false;
    for (; *s != '\0'; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return false;
    return true;
}

/* The header name of message m, or NULL. */
static const char *header(const of_message *m, const char *name)
{
    for (size_t i = 0; i < m->n_headers; i++)
        if (strcmp(m->headers[i].name, name) == 0)
            return m->headers[i].value;
    return NULL;
}

/* Each step is a span: of the event's trace (its sender the parent), else of
 * the entity's (its last step the parent, also a step of this batch), else of
 * the scope's for a new entity, else of a new trace (no parent). The set-state
 * row keeps the step's traceparent and the status event carries it. */
static void test_traces(void **state)
{
    fixture f;
    hrow h[8];
    char tp[128];
    memset(&f, 0, sizeof f);
    f.h = &traced_handler;
    finish_fails = OF_OK;
    /* 1. A with the event's trace; 2. A again, no trace: rejected (DONE), on
     * A's trace as 1 left it; 3. C, which has no trace, no event trace: a
     * new trace; 4. a creation in scope-1: the scope's; 5. one in no scope: new. */
    add(&f, (of_route){.kind = OF_ROUTE_TRIGGER, .entity_id = ID_A, .trigger = T_FINISH});
    f.items[0].ev.has_trace =
        of_trace_parse("00-" TRACE_EV "-" SPAN_EV "-01", 55, &f.items[0].ev.trace);
    snprintf(f.items[0].ev.tracestate, sizeof f.items[0].ev.tracestate, "vendor=x1");
    assert_true(f.items[0].ev.has_trace);
    add(&f, (of_route){.kind = OF_ROUTE_TRIGGER, .entity_id = ID_A, .trigger = T_FINISH});
    add(&f, (of_route){.kind = OF_ROUTE_TRIGGER, .entity_id = ID_C, .trigger = T_FINISH});
    add(&f, (of_route){.kind = OF_ROUTE_CREATE,
                       .trigger = T_CREATE,
                       .scope_id = "scope-1",
                       .scope_kind = "shelf"});
    add(&f, (of_route){.kind = OF_ROUTE_CREATE, .trigger = T_CREATE});
    assert_int_equal(run(&f), OF_OK);
    assert_string_equal(f.items[1].outcome, "rejected");

    size_t n = history_rows(&f.wp, h, 8);
    assert_int_equal(n, 5);
    for (size_t i = 0; i < n; i++) {
        assert_true(lower_hex(h[i].trace, 32));
        assert_true(lower_hex(h[i].span, 16));
        for (size_t k = 0; k < i; k++)
            assert_string_not_equal(h[i].span, h[k].span);
    }
    /* History rows in event order: ev-1, ev-2 (waves split on A), ev-3 .. ev-5. */
    assert_string_equal(h[0].event, "ev-1");
    assert_string_equal(h[0].trace, TRACE_EV);
    assert_string_equal(h[0].parent, SPAN_EV);
    assert_string_equal(h[1].event, "ev-2");
    assert_string_equal(h[1].outcome, "rejected");
    assert_string_equal(h[1].trace, TRACE_EV);
    assert_string_equal(h[1].parent, h[0].span);
    assert_string_equal(h[2].event, "ev-3");
    assert_string_not_equal(h[2].trace, TRACE_EV);
    assert_string_not_equal(h[2].trace, TRACE_A);
    assert_string_equal(h[2].parent, "");
    assert_string_equal(h[3].event, "ev-4");
    assert_string_equal(h[3].trace, TRACE_SC);
    assert_string_equal(h[3].parent, SPAN_SC);
    assert_string_equal(h[4].event, "ev-5");
    assert_string_equal(h[4].parent, "");
    assert_string_not_equal(h[4].trace, h[2].trace);

    /* A keeps the span of ev-1's step, in memory and in its set-state row. */
    const of_entity *a = &f.w.batch.entities[0];
    assert_string_equal(a->id, ID_A);
    assert_string_equal(a->trace.trace_id, TRACE_EV);
    assert_string_equal(a->trace.span_id, h[0].span);
    of_trace_format(&a->trace, tp);
    bool kept = false;
    for (size_t i = 0; i < f.wp.n; i++)
        if (f.wp.cmds[i].stmt != NULL && strcmp(f.wp.cmds[i].stmt, "gadget_set_state") == 0)
            kept |= strstr(f.wp.cmds[i].values[4], tp) != NULL;
    assert_true(kept);

    /* The status events: ev-1's with its tracestate, the creation's in scope-1 with the scope's
     * flags. */
    assert_int_equal(f.w.batch.n_outbox, 4);
    assert_string_equal(header(&f.w.batch.outbox[0].m, OF_TRACEPARENT_HEADER), tp);
    assert_string_equal(header(&f.w.batch.outbox[0].m, OF_TRACESTATE_HEADER), "vendor=x1");
    for (size_t i = 1; i < f.w.batch.n_outbox; i++)
        assert_null(header(&f.w.batch.outbox[i].m, OF_TRACESTATE_HEADER));
    snprintf(tp, sizeof tp, "00-%s-%s-00", TRACE_SC, h[3].span);
    assert_string_equal(header(&f.w.batch.outbox[2].m, OF_TRACEPARENT_HEADER), tp);
    snprintf(tp, sizeof tp, "00-%s-%s-01", h[4].trace, h[4].span);
    assert_string_equal(header(&f.w.batch.outbox[3].m, OF_TRACEPARENT_HEADER), tp);
    done(&f);
}

/* A step that fails names its event (b->fault) and stops the batch. */
static void test_fault(void **state)
{
    fixture f;
    memset(&f, 0, sizeof f);
    add(&f, (of_route){.kind = OF_ROUTE_CREATE, .trigger = T_CREATE});
    add(&f, (of_route){.kind = OF_ROUTE_TRIGGER, .entity_id = ID_A, .trigger = T_FINISH});
    add(&f, (of_route){.kind = OF_ROUTE_CREATE, .trigger = T_CREATE});
    finish_fails = OF_ERANGE;
    assert_int_equal(run(&f), OF_ERANGE);
    assert_int_equal(f.w.batch.fault, 1);
    assert_string_equal(f.items[1].err.reason,
                        "step \"Finish\" of the gadget machine failed: value outside the "
                        "contract's limits");
    assert_int_equal(f.items[2].state, OF_ITEM_PENDING); /* not reached */
    done(&f);
    finish_fails = OF_OK;
}

static void test_classes(void **state)
{
    assert_int_equal(of_batch_classify(OF_ECONN, NULL), FAIL_WAIT);
    assert_int_equal(of_batch_classify(OF_ECANCELED, NULL), FAIL_WAIT);
    assert_int_equal(of_batch_classify(OF_ESQL, "08006"), FAIL_WAIT);
    assert_int_equal(of_batch_classify(OF_ESQL, "40001"), FAIL_TRANSIENT);
    assert_int_equal(of_batch_classify(OF_ESQL, "40P01"), FAIL_TRANSIENT);
    assert_int_equal(of_batch_classify(OF_ESQL, "55P03"), FAIL_TRANSIENT);
    assert_int_equal(of_batch_classify(OF_ESQL, "57014"), FAIL_TRANSIENT);
    assert_int_equal(of_batch_classify(OF_ENOMEM, NULL), FAIL_TRANSIENT);
    assert_int_equal(of_batch_classify(OF_ETRANSIENT, NULL), FAIL_TRANSIENT);
    assert_int_equal(of_batch_classify(OF_EVENT_ERR_NO_MEMORY, NULL), FAIL_TRANSIENT);
    /* Deterministic: the same input fails the same way. */
    assert_int_equal(of_batch_classify(OF_ESQL, "23505"), FAIL_PERMANENT);
    assert_int_equal(of_batch_classify(OF_ESQL, "22021"), FAIL_PERMANENT);
    assert_int_equal(of_batch_classify(OF_ESQL, NULL), FAIL_PERMANENT);
    assert_int_equal(of_batch_classify(OF_EINVAL, NULL), FAIL_PERMANENT);
    assert_int_equal(of_batch_classify(OF_ERANGE, NULL), FAIL_PERMANENT);
    assert_int_equal(of_batch_classify(OF_ESTATE, NULL), FAIL_PERMANENT);
    assert_int_equal(of_batch_classify(OF_EVENT_ERR_OUT_OF_RANGE, NULL), FAIL_PERMANENT);
    assert_int_equal(of_batch_classify(-1, NULL), FAIL_PERMANENT);
    /* Every code has a name. */
    assert_string_equal(of_strerror(OF_ERANGE), "value outside the contract's limits");
    assert_string_equal(of_strerror(OF_EVENT_ERR_MALFORMED_JSON), "MALFORMED_JSON");
    assert_string_equal(of_strerror(12345), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routes),
        cmocka_unit_test(test_fault),
        cmocka_unit_test(test_traces),
        cmocka_unit_test(test_classes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
