/* views.c: the order view and the timeline, as SQL and JSON (views.h). */
#include "domain/views.h"

#include "orderflow/db.h"

#include <stddef.h>

const char of_view_resolve_uuid_sql[] =
    "select id from orders where id = $1::text::uuid union all"
    " select order_id from returns where id = $1::text::uuid union all"
    " select id from orders where source_event_id = $1::text union all"
    " select order_id from returns where source_event_id = $1::text limit 1";
const char of_view_resolve_text_sql[] =
    "select id from orders where source_event_id = $1 union all"
    " select order_id from returns where source_event_id = $1 limit 1";

/* clang-format off */
static const char sql_order[] =
    "select v.order_id, v.status, v.version, v.status_reason as reason, v.customer_id,"
    " v.total_cents, v.currency, v.correlation_id, o.source_event_id,"
    " " OF_DB_TS("v.created_at") " as created_at,"
    " " OF_DB_TS("v.updated_at") " as updated_at,"
    " " OF_DB_TS("v.confirmed_at") " as confirmed_at,"
    " " OF_DB_TS("v.delivered_at") " as delivered_at,"
    " v.order_process, v.order_update, round(v.ms_to_confirm)::bigint as ms_to_confirm,"
    " v.rejected_updates"
    " from order_overview v join orders o on o.id = v.order_id where v.order_id = $1::uuid";

static const char sql_items[] =
    "select i.line, i.product_id, i.quantity, i.unit_price_cents,"
    " i.quantity * i.unit_price_cents as line_total_cents, i.reserved,"
    " (select coalesce(sum(ri.quantity), 0) from return_items ri join returns r"
    " on r.id = ri.return_id where r.order_id = i.order_id and ri.product_id = i.product_id"
    " and r.status <> 'REJECTED')::integer as returned"
    " from order_items i where i.order_id = $1::uuid order by i.line";

/* An execution's trace is its first step's (migration 0018). */
static const char sql_executions[] =
    "select x.machine, x.status, x.current_state,"
    " " OF_DB_TS("x.started_at") " as started_at,"
    " " OF_DB_TS("x.stopped_at") " as stopped_at, x.return_id, x.error, x.id,"
    " (select of_trace_hex(h.trace_id) from execution_history h where h.execution_id = x.id"
    " order by h.seq limit 1) as trace_id"
    " from executions x where x.order_id = $1::uuid order by x.started_at, x.id";

static const char sql_returns_json[] =
    "select r.id, r.status, r.version, r.refund_cents, r.reason, r.status_reason,"
    " coalesce((select json_agg(json_build_object('product_id', product_id, 'quantity',"
    " quantity, 'unit_price_cents', unit_price_cents) order by product_id)"
    " from return_items where return_id = r.id), '[]'::json) as items, r.correlation_id,"
    " " OF_DB_TS("r.created_at") " as created_at,"
    " " OF_DB_TS("r.updated_at") " as updated_at"
    " from returns r where r.order_id = $1::uuid order by r.created_at, r.id";

static const char sql_refunds[] =
    "select id, cause, amount_cents, return_id,"
    " " OF_DB_TS("created_at") " as created_at"
    " from refunds where order_id = $1::uuid order by created_at, id";

static const char sql_deadlines[] =
    "select kind, " OF_DB_TS("due_at") " as due_at,"
    " " OF_DB_TS("fired_at") " as fired_at,"
    " " OF_DB_TS("cancelled_at") " as cancelled_at"
    " from deadlines where order_id = $1::uuid order by due_at";

const char *const of_view_order_sql[OF_VIEW_ORDER_PARTS] = {
    sql_order, sql_items, sql_executions, sql_returns_json, sql_refunds, sql_deadlines,
};
const char *const of_view_part_names[OF_VIEW_ORDER_PARTS] = {
    "order", "items", "executions", "returns", "refunds", "deadlines",
};

/* Time order; rows of one transaction may share a timestamp (OrderCompleted
 * and the Start of OrderUpdate), so the execution that started first, then
 * seq, break the tie. */
const char of_view_history_sql[] =
    "select " OF_DB_TS("t.at") " as at, t.machine, t.execution_status, t.return_id, t.seq,"
    " t.step, t.from_state, t.to_state, t.outcome, t.topic, t.partition, t.\"offset\","
    " t.event_id as ce_id, t.detail, t.trace_id, t.span_id, t.parent_span_id"
    " from order_timeline t"
    " where t.order_id = $1::uuid order by t.at, (select e.started_at from executions e"
    " where e.order_id = t.order_id and e.machine = t.machine"
    " and e.return_id is not distinct from t.return_id), t.seq";
/* clang-format on */

cJSON *of_view_order_json(const PGresult *const *parts, int *missing)
{
    cJSON *obj;
    *missing = 0;
    if (parts[0] == NULL || PQntuples(parts[0]) == 0) {
        *missing = 1;
        return NULL;
    }
    obj = of_db_row_json(parts[0], 0);
    for (size_t i = 1; obj != NULL && i < OF_VIEW_ORDER_PARTS; i++) {
        cJSON *rows = parts[i] != NULL ? of_db_rows_json(parts[i]) : NULL;
        if (rows == NULL || !cJSON_AddItemToObject(obj, of_view_part_names[i], rows)) {
            cJSON_Delete(rows);
            cJSON_Delete(obj);
            obj = NULL;
        }
    }
    return obj;
}
