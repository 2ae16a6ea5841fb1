/* views.h: what a client is shown of an order: the SQL and the JSON it makes, shared by
 * `orderctl describe --json` / `history --json` and the gateway's GET /orders/{id} and
 * /orders/{id}/history, so that both show the same.
 *
 * The SQL runs with one parameter; the caller runs it however it runs SQL
 * (blocking libpq, a pipeline on the loop) and hands the results back. */
#ifndef ORDERFLOW_DOMAIN_VIEWS_H
#define ORDERFLOW_DOMAIN_VIEWS_H

#include <cjson/cJSON.h>
#include <libpq-fe.h>

/* Finds the order a client names, $1 the text it gave: the order's id, its
 * correlation id (the ce_id of its order.created), or the id or correlation
 * id (the ce_id of the return.requested) of one of its returns. One row (the
 * order id) or none. The uuid form when $1 is a UUID, else the text form;
 * every lookup is a unique index. */
extern const char of_view_resolve_uuid_sql[];
extern const char of_view_resolve_text_sql[];

/* The order view: each part run with $1 = the order id, in this order; the
 * first is the order row, the rest become arrays named by of_view_part_names. */
#define OF_VIEW_ORDER_PARTS 6
extern const char *const of_view_order_sql[OF_VIEW_ORDER_PARTS];
extern const char *const of_view_part_names[OF_VIEW_ORDER_PARTS];
/* The order view's JSON object from the parts' results (in order). NULL when
 * the order row is missing or out of memory (*missing tells which). */
cJSON *of_view_order_json(const PGresult *const *parts, int *missing);

/* The timeline of an order ($1 = its id): every history row of its
 * executions (its returns' included) in time order, each with its span
 * (trace_id, span_id, parent_span_id as hex); of_db_rows_json() of the result
 * is the JSON array. */
extern const char of_view_history_sql[];

#endif
