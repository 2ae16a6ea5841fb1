/* order_machine.c: the order transition table, its statements and its order.status.changed event.
 */
#include "domain/order_machine.h"

#include "domain/contract.h"
#include "orderflow/event.h"
#include "orderflow/uuid.h"
#include "orderflow/worker.h"

#include <stdio.h>
#include <string.h>

static int order_changed(of_step_ctx *s, int from, int to, of_message *out);

/* Short names for the table: states, triggers, steps, executions, execution statuses. */
enum {
    NONE = OF_ORDER_NONE,
    CREATED = OF_ORDER_CREATED,
    RESERVED = OF_ORDER_INVENTORY_RESERVED,
    CONFIRMED = OF_ORDER_CONFIRMED,
    REJECTED = OF_ORDER_REJECTED,
    PAID = OF_ORDER_PAID,
    SHIPPED = OF_ORDER_SHIPPED,
    DELIVERED = OF_ORDER_DELIVERED,
    CANCELLED = OF_ORDER_CANCELLED,
    RETURNED = OF_ORDER_RETURNED,
    PARTIAL = OF_ORDER_PARTIALLY_RETURNED,
};
enum {
    T_AUTO = OF_ORDER_T_AUTO,
    T_CREATED = OF_ORDER_T_CREATED,
    T_PAID = OF_ORDER_T_PAID,
    T_SHIPPED = OF_ORDER_T_SHIPPED,
    T_DELIVERED = OF_ORDER_T_DELIVERED,
    T_CANCELLED = OF_ORDER_T_CANCELLED,
    T_RETURNED = OF_ORDER_T_RETURNED,
    T_PARTIALLY_RETURNED = OF_ORDER_T_PARTIALLY_RETURNED,
    T_PAYMENT_TIMEOUT = OF_ORDER_T_PAYMENT_TIMEOUT,
};
enum {
    CREATE_ORDER = OF_ORDER_STEP_CREATE_ORDER,
    UPDATE_INVENTORY = OF_ORDER_STEP_UPDATE_INVENTORY,
    ORDER_COMPLETED = OF_ORDER_STEP_ORDER_COMPLETED,
    RECORD_PAYMENT = OF_ORDER_STEP_RECORD_PAYMENT,
    CANCEL_ORDER = OF_ORDER_STEP_CANCEL_ORDER,
    PAYMENT_TIMEOUT = OF_ORDER_STEP_PAYMENT_TIMEOUT,
    RECORD_SHIPMENT = OF_ORDER_STEP_RECORD_SHIPMENT,
    RECORD_DELIVERY = OF_ORDER_STEP_RECORD_DELIVERY,
    APPLY_RETURN = OF_ORDER_STEP_APPLY_RETURN,
};
enum { PROCESS = OF_ORDER_X_PROCESS, UPDATE = OF_ORDER_X_UPDATE, NO_EXEC = OF_EXEC_NONE };
#define RUNNING   OF_EXEC_RUNNING
#define SUCCEEDED OF_EXEC_SUCCEEDED
#define FAILED    OF_EXEC_FAILED
#define ABORTED   OF_EXEC_ABORTED
#define TIMED_OUT OF_EXEC_TIMED_OUT

/* One row per edge; rows sharing (from, trigger) are adjacent and share their
 * step, which chooses the target. */
// clang-format off
static const of_transition order_rows[] = {
    /* from      trigger                to          step               execution starts  after       then */
    {NONE,       T_CREATED,             CREATED,    CREATE_ORDER,      PROCESS,  true,   RUNNING,    NO_EXEC},
    {NONE,       T_CREATED,             REJECTED,   CREATE_ORDER,      PROCESS,  true,   FAILED,     NO_EXEC},
    {CREATED,    T_AUTO,                RESERVED,   UPDATE_INVENTORY,  PROCESS,  false,  RUNNING,    NO_EXEC},
    {CREATED,    T_AUTO,                REJECTED,   UPDATE_INVENTORY,  PROCESS,  false,  FAILED,     NO_EXEC},
    {RESERVED,   T_AUTO,                CONFIRMED,  ORDER_COMPLETED,   PROCESS,  false,  SUCCEEDED,  UPDATE},
    {CONFIRMED,  T_PAID,                PAID,       RECORD_PAYMENT,    UPDATE,   false,  RUNNING,    NO_EXEC},
    {CONFIRMED,  T_CANCELLED,           CANCELLED,  CANCEL_ORDER,      UPDATE,   false,  ABORTED,    NO_EXEC},
    {CONFIRMED,  T_PAYMENT_TIMEOUT,     CANCELLED,  PAYMENT_TIMEOUT,   UPDATE,   false,  TIMED_OUT,  NO_EXEC},
    {PAID,       T_SHIPPED,             SHIPPED,    RECORD_SHIPMENT,   UPDATE,   false,  RUNNING,    NO_EXEC},
    {PAID,       T_CANCELLED,           CANCELLED,  CANCEL_ORDER,      UPDATE,   false,  ABORTED,    NO_EXEC},
    {SHIPPED,    T_DELIVERED,           DELIVERED,  RECORD_DELIVERY,   UPDATE,   false,  SUCCEEDED,  NO_EXEC},
    {DELIVERED,  T_RETURNED,            RETURNED,   APPLY_RETURN,      UPDATE,   false,  SUCCEEDED,  NO_EXEC},
    {DELIVERED,  T_PARTIALLY_RETURNED,  PARTIAL,    APPLY_RETURN,      UPDATE,   false,  SUCCEEDED,  NO_EXEC},
    {PARTIAL,    T_RETURNED,            RETURNED,   APPLY_RETURN,      UPDATE,   false,  SUCCEEDED,  NO_EXEC},
    {PARTIAL,    T_PARTIALLY_RETURNED,  PARTIAL,    APPLY_RETURN,      UPDATE,   false,  SUCCEEDED,  NO_EXEC},
};
// clang-format on

static const char *const order_triggers[OF_ORDER_TRIGGER_COUNT] = {
    [OF_ORDER_T_AUTO] = "auto",
    [OF_ORDER_T_CREATED] = OF_TYPE_ORDER_CREATED,
    [OF_ORDER_T_PAID] = "PAID",
    [OF_ORDER_T_SHIPPED] = "SHIPPED",
    [OF_ORDER_T_DELIVERED] = "DELIVERED",
    [OF_ORDER_T_CANCELLED] = "CANCELLED",
    [OF_ORDER_T_RETURNED] = "RETURNED",
    [OF_ORDER_T_PARTIALLY_RETURNED] = "PARTIALLY_RETURNED",
    [OF_ORDER_T_PAYMENT_TIMEOUT] = "PAYMENT_TIMEOUT",
};

static const char *const order_steps[OF_ORDER_STEP_COUNT] = {
    [OF_ORDER_STEP_CREATE_ORDER] = "CreateOrder",
    [OF_ORDER_STEP_UPDATE_INVENTORY] = "UpdateInventory",
    [OF_ORDER_STEP_ORDER_COMPLETED] = "OrderCompleted",
    [OF_ORDER_STEP_RECORD_PAYMENT] = "RecordPayment",
    [OF_ORDER_STEP_CANCEL_ORDER] = "CancelOrder",
    [OF_ORDER_STEP_PAYMENT_TIMEOUT] = "PaymentTimeout",
    [OF_ORDER_STEP_RECORD_SHIPMENT] = "RecordShipment",
    [OF_ORDER_STEP_RECORD_DELIVERY] = "RecordDelivery",
    [OF_ORDER_STEP_APPLY_RETURN] = "ApplyReturn",
};

static const char *const order_executions[OF_ORDER_X_COUNT] = {
    [OF_ORDER_X_NONE] = "",
    [OF_ORDER_X_PROCESS] = "OrderProcess",
    [OF_ORDER_X_UPDATE] = "OrderUpdate",
};

/* An order's executions are keyed by order_id with no return_id; the scope
 * column is always '' (an order belongs to nothing). Every statement but the
 * load takes one array per column (see machine.h); the joins run on
 * orders_pkey, executions_one_per_order and executions_order_id_idx. */
static const of_db_stmt order_stmts[OF_SQL_COUNT] = {
    [OF_SQL_LOAD] = {"order_load",
                     "select id::text, status, version, correlation_id, '',"
                     " coalesce(traceparent, '') from orders"
                     " where id = any($1::uuid[]) order by id for update",
                     false},
    [OF_SQL_SET_STATE] =
        {"order_set_state",
         "with u as (update orders o set status = t.status,"
         " version = o.version + 1, status_reason = nullif(t.reason, ''),"
         " updated_at = now(), confirmed_at = case when t.status = 'CONFIRMED' then now()"
         " else o.confirmed_at end, delivered_at = case when t.status = 'DELIVERED' then now()"
         " else o.delivered_at end, traceparent = t.traceparent"
         " from unnest($1::uuid[], $2::text[], $3::integer[], $4::text[], $5::text[])"
         " as t(id, status, version, reason, traceparent)"
         " where o.id = any($1) and o.id = t.id and o.version = t.version returning 1)"
         " select of_expect_rows((select count(*) from u), cardinality($1),"
         " 'orders at the versions read')",
         false},
    [OF_SQL_EXEC_START] = {"order_exec_start",
                           "insert into executions (id, machine, order_id, return_id, status,"
                           " current_state, input, stopped_at, error)"
                           " select t.id, t.machine, t.entity, null, t.status, t.state,"
                           " t.input::jsonb, case when t.status = 'RUNNING' then null else now()"
                           " end, nullif(t.error, '') from unnest($1::uuid[], $2::text[],"
                           " $3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[],"
                           " $8::text[]) as t(id, machine, entity, scope, status, state, input,"
                           " error)",
                           true},
    [OF_SQL_EXEC_UPDATE] = {"order_exec_update",
                            "with u as (update executions x set current_state = t.state,"
                            " status = t.status, stopped_at = case when t.status = 'RUNNING'"
                            " then null else now() end, error = coalesce(nullif(t.error, ''),"
                            " x.error) from unnest($1::text[], $2::uuid[], $3::text[], $4::text[],"
                            " $5::text[], $6::text[]) as t(machine, entity, scope, state, status,"
                            " error) where x.order_id = any($2) and x.return_id is null"
                            " and x.order_id = t.entity and x.machine = t.machine returning 1)"
                            " select of_expect_rows((select count(*) from u), cardinality($2),"
                            " 'executions of orders')",
                            false},
    [OF_SQL_HISTORY] = {"order_history",
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
                        " where e.order_id = t.entity and e.return_id is null"
                        " and (t.machine = '' or e.machine = t.machine)"
                        " order by e.started_at desc, e.id desc limit 1) x",
                        false},
};

const of_machine of_order_machine = {
    .name = "order",
    .entity = "order",
    .rows = order_rows,
    .n_rows = sizeof order_rows / sizeof order_rows[0],
    .states = of_order_status_names,
    .n_states = OF_ORDER_STATUS_COUNT,
    .triggers = order_triggers,
    .n_triggers = OF_ORDER_TRIGGER_COUNT,
    .steps = order_steps,
    .n_steps = OF_ORDER_STEP_COUNT,
    .executions = order_executions,
    .n_executions = OF_ORDER_X_COUNT,
    .stmts = order_stmts,
    .changed = order_changed,
};

int of_order_update_trigger(of_order_status status)
{
    switch (status) {
    case OF_ORDER_PAID:
        return OF_ORDER_T_PAID;
    case OF_ORDER_SHIPPED:
        return OF_ORDER_T_SHIPPED;
    case OF_ORDER_DELIVERED:
        return OF_ORDER_T_DELIVERED;
    case OF_ORDER_CANCELLED:
        return OF_ORDER_T_CANCELLED;
    case OF_ORDER_RETURNED:
        return OF_ORDER_T_RETURNED;
    case OF_ORDER_PARTIALLY_RETURNED:
        return OF_ORDER_T_PARTIALLY_RETURNED;
    default:
        return -1;
    }
}

/* order.status.changed to order.status, keyed and subjected by the order id. */
static int order_changed(of_step_ctx *s, int from, int to, of_message *out)
{
    of_order_status_changed ev;
    of_event_error err;
    char id[OF_UUID_STRLEN + 1], topic[256];
    cJSON *data = NULL;
    int rc;

    memset(&ev, 0, sizeof ev);
    snprintf(ev.order_id, sizeof ev.order_id, "%s", s->e->id);
    ev.status = (of_order_status)to;
    ev.previous_status = (of_order_status)from;
    ev.version = s->new_version;
    if (s->reason[0] != '\0') {
        ev.has_reason = true;
        snprintf(ev.reason, sizeof ev.reason, "%s", s->reason);
    }
    snprintf(ev.correlation_id, sizeof ev.correlation_id, "%s", s->e->correlation);
    if (of_event_time_now(ev.at) != 0 || of_uuid_v7(id) != 0)
        return OF_ENOMEM;
    rc = of_order_status_changed_encode(&ev, &data, &err);
    if (rc != 0)
        return rc;
    of_event_attrs attrs = {id, OF_TYPE_ORDER_STATUS_CHANGED, s->b->w->source, s->e->id, NULL};
    rc = of_event_build(out, of_worker_topic(s->b->w, OF_TOPIC_ORDER_STATUS, topic, sizeof topic),
                        s->e->id, &attrs, data, &err);
    cJSON_Delete(data);
    return rc;
}
