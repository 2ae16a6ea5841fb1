/* return_machine.c: the ReturnRefund transition table, its statements and its return.status.changed
 * event. */
#include "domain/return_machine.h"

#include "domain/contract.h"
#include "orderflow/event.h"
#include "orderflow/uuid.h"
#include "orderflow/worker.h"

#include <stdio.h>
#include <string.h>

static int return_changed(of_step_ctx *s, int from, int to, of_message *out);

/* Short names for the table. */
enum {
    NONE = OF_RETURN_NONE,
    INITIATED = OF_RETURN_INITIATED,
    REJECTED = OF_RETURN_REJECTED,
    PROCESSED = OF_RETURN_RETURN_PROCESSED,
    REFUND_INITIATED = OF_RETURN_REFUND_INITIATED,
    REFUND_PROCESSED = OF_RETURN_REFUND_PROCESSED,
    REFUND_COMPLETED = OF_RETURN_REFUND_COMPLETED,
    RR = OF_RETURN_X_RETURN_REFUND,
    T_AUTO = OF_RETURN_T_AUTO,
    T_REQUESTED = OF_RETURN_T_REQUESTED,
    INITIATE_RETURN = OF_RETURN_STEP_INITIATE_RETURN,
    PROCESS_RETURN = OF_RETURN_STEP_PROCESS_RETURN,
    INITIATE_REFUND = OF_RETURN_STEP_INITIATE_REFUND,
    PROCESS_REFUND = OF_RETURN_STEP_PROCESS_REFUND,
    REFUND_COMPLETED_STEP = OF_RETURN_STEP_REFUND_COMPLETED,
};

// clang-format off
static const of_transition return_rows[] = {
    /* from            trigger      to                step              execution starts  after             then */
    {NONE,             T_REQUESTED, INITIATED,        INITIATE_RETURN,  RR,       true,   OF_EXEC_RUNNING,   OF_EXEC_NONE},
    {NONE,             T_REQUESTED, REJECTED,         INITIATE_RETURN,  RR,       true,   OF_EXEC_FAILED,    OF_EXEC_NONE},
    {INITIATED,        T_AUTO,      PROCESSED,        PROCESS_RETURN,   RR,       false,  OF_EXEC_RUNNING,   OF_EXEC_NONE},
    {PROCESSED,        T_AUTO,      REFUND_INITIATED, INITIATE_REFUND,  RR,       false,  OF_EXEC_RUNNING,   OF_EXEC_NONE},
    {REFUND_INITIATED, T_AUTO,      REFUND_PROCESSED, PROCESS_REFUND,   RR,       false,  OF_EXEC_RUNNING,   OF_EXEC_NONE},
    {REFUND_PROCESSED, T_AUTO,      REFUND_COMPLETED, REFUND_COMPLETED_STEP, RR,  false,  OF_EXEC_SUCCEEDED, OF_EXEC_NONE},
};
// clang-format on

static const char *const return_triggers[OF_RETURN_TRIGGER_COUNT] = {
    [OF_RETURN_T_AUTO] = "auto",
    [OF_RETURN_T_REQUESTED] = OF_TYPE_RETURN_REQUESTED,
};

static const char *const return_steps[OF_RETURN_STEP_COUNT] = {
    [OF_RETURN_STEP_INITIATE_RETURN] = "InitiateReturn",
    [OF_RETURN_STEP_PROCESS_RETURN] = "ProcessReturn",
    [OF_RETURN_STEP_INITIATE_REFUND] = "InitiateRefund",
    [OF_RETURN_STEP_PROCESS_REFUND] = "ProcessRefund",
    [OF_RETURN_STEP_REFUND_COMPLETED] = "RefundCompleted",
};

static const char *const return_executions[OF_RETURN_X_COUNT] = {
    [OF_RETURN_X_NONE] = "",
    [OF_RETURN_X_RETURN_REFUND] = "ReturnRefund",
};

/* A return's execution row carries the return (entity) and its order
 * (scope). Every statement but the load takes one array per column (see
 * machine.h); the joins run on returns_pkey and executions_one_per_return. */
static const of_db_stmt return_stmts[OF_SQL_COUNT] = {
    [OF_SQL_LOAD] = {"return_load",
                     "select id::text, status, version, correlation_id, order_id::text,"
                     " coalesce(traceparent, '') from returns where id = any($1::uuid[])"
                     " order by id for update",
                     false},
    [OF_SQL_SET_STATE] =
        {"return_set_state",
         "with u as (update returns r set status = t.status,"
         " version = r.version + 1, status_reason = nullif(t.reason, ''),"
         " updated_at = now(), traceparent = t.traceparent"
         " from unnest($1::uuid[], $2::text[], $3::integer[], $4::text[], $5::text[])"
         " as t(id, status, version, reason, traceparent)"
         " where r.id = any($1) and r.id = t.id and r.version = t.version returning 1)"
         " select of_expect_rows((select count(*) from u), cardinality($1),"
         " 'returns at the versions read')",
         false},
    [OF_SQL_EXEC_START] = {"return_exec_start",
                           "insert into executions (id, machine, order_id, return_id, status,"
                           " current_state, input, stopped_at, error)"
                           " select t.id, t.machine, t.scope::uuid, t.entity, t.status, t.state,"
                           " t.input::jsonb, case when t.status = 'RUNNING' then null else now()"
                           " end, nullif(t.error, '') from unnest($1::uuid[], $2::text[],"
                           " $3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[],"
                           " $8::text[]) as t(id, machine, entity, scope, status, state, input,"
                           " error)",
                           true},
    [OF_SQL_EXEC_UPDATE] =
        {"return_exec_update",
         "with u as (update executions x set current_state = t.state,"
         " status = t.status, stopped_at = case when t.status = 'RUNNING'"
         " then null else now() end, error = coalesce(nullif(t.error, ''),"
         " x.error) from unnest($1::text[], $2::uuid[], $3::text[], $4::text[],"
         " $5::text[], $6::text[]) as t(machine, entity, scope, state, status,"
         " error) where x.return_id = any($2) and x.return_id = t.entity and x.machine = t.machine"
         " and x.order_id = t.scope::uuid returning 1)"
         " select of_expect_rows((select count(*) from u), cardinality($2),"
         " 'executions of returns')",
         false},
    [OF_SQL_HISTORY] = {"return_history",
                        "insert into execution_history (execution_id, seq, step, from_state,"
                        " to_state, outcome, event_id, topic, partition, \"offset\", detail,"
                        " trace_id, span_id, parent_span_id)"
                        " select x.id, coalesce((select max(h.seq) from execution_history h"
                        " where h.execution_id = x.id), 0)"
                        " + row_number() over (partition by x.id order by t.n), t.step,"
                        " nullif(t.from_state, ''), nullif(t.to_state, ''), t.outcome,"
                        " t.event_id, t.topic, t.part, t.off, t.detail::jsonb, t.trace,"
                        " of_span_in(t.span), of_span_in(t.parent)"
                        " from unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[],"
                        " $6::text[], $7::text[], $8::text[], $9::text[], $10::integer[],"
                        " $11::bigint[], $12::text[], $13::uuid[], $14::text[], $15::text[])"
                        " with ordinality as t(machine, entity, scope, step, from_state, to_state,"
                        " outcome, event_id, topic, part, off, detail, trace, span, parent, n)"
                        " cross join lateral (select e.id from executions e"
                        " where e.return_id = t.entity and e.order_id = t.scope::uuid"
                        " and (t.machine = '' or e.machine = t.machine)"
                        " order by e.started_at desc, e.id desc limit 1) x",
                        false},
};

const of_machine of_return_machine = {
    .name = "return",
    .entity = "return",
    .rows = return_rows,
    .n_rows = sizeof return_rows / sizeof return_rows[0],
    .states = of_return_status_names,
    .n_states = OF_RETURN_STATUS_COUNT,
    .triggers = return_triggers,
    .n_triggers = OF_RETURN_TRIGGER_COUNT,
    .steps = return_steps,
    .n_steps = OF_RETURN_STEP_COUNT,
    .executions = return_executions,
    .n_executions = OF_RETURN_X_COUNT,
    .stmts = return_stmts,
    .changed = return_changed,
};

/* return.status.changed to return.requested, keyed by the order id so that
 * all of one order's events stay in one partition. */
static int return_changed(of_step_ctx *s, int from, int to, of_message *out)
{
    const of_return_step *rs = s->out;
    of_return_status_changed ev;
    of_event_error err;
    char id[OF_UUID_STRLEN + 1], topic[256];
    cJSON *data = NULL;
    int rc;

    memset(&ev, 0, sizeof ev);
    snprintf(ev.return_id, sizeof ev.return_id, "%s", s->e->id);
    snprintf(ev.order_id, sizeof ev.order_id, "%s", s->e->scope_id);
    ev.status = (of_return_status)to;
    ev.previous_status = (of_return_status)from;
    ev.version = s->new_version;
    if (s->reason[0] != '\0') {
        ev.has_reason = true;
        snprintf(ev.reason, sizeof ev.reason, "%s", s->reason);
    }
    if (rs != NULL && rs->has_refund) {
        ev.has_refund_cents = true;
        ev.refund_cents = rs->refund_cents;
    }
    snprintf(ev.correlation_id, sizeof ev.correlation_id, "%s", s->e->correlation);
    if (of_event_time_now(ev.at) != 0 || of_uuid_v7(id) != 0)
        return OF_ENOMEM;
    rc = of_return_status_changed_encode(&ev, &data, &err);
    if (rc != 0)
        return rc;
    of_event_attrs attrs = {id, OF_TYPE_RETURN_STATUS_CHANGED, s->b->w->source, s->e->scope_id,
                            NULL};
    rc = of_event_build(out,
                        of_worker_topic(s->b->w, OF_TOPIC_RETURN_REQUESTED, topic, sizeof topic),
                        s->e->scope_id, &attrs, data, &err);
    cJSON_Delete(data);
    return rc;
}
