/* main.c: the return-requested worker, which runs the ReturnRefund machine.
 *
 * It consumes return.requested, which carries two types: return.requested
 * from customer service starts InitiateReturn (validated against the order:
 * delivered, within the return window, items bought and not yet returned);
 * return.status.changed, the worker's own events, drives ProcessReturn (stock
 * back), InitiateRefund (amount from the order's price snapshot),
 * ProcessRefund (the one refund row) and RefundCompleted, which publishes
 * order.status.update RETURNED or PARTIALLY_RETURNED for the order machine. */
#include "domain/return_machine.h"

#include "domain/contract_item.h"
#include "orderflow/config.h"
#include "domain/contract.h"
#include "orderflow/log.h"
#include "orderflow/uuid.h"
#include "orderflow/worker.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct settings {
    of_worker_settings w;  /* common worker settings */
    int64_t return_window; /* ms after delivery during which returns are accepted */
} settings;

static settings cfg;

static const of_config_item items[] = {
    OF_WORKER_CONFIG(settings, w),
    {"return-window", "ORDERFLOW_RETURN_WINDOW", "return-window", OF_CFG_MS, "30d",
     "how long after delivery a return is accepted", offsetof(settings, return_window), 0,
     3650LL * 24 * 3600 * 1000},
};

static const char *const topics[] = {OF_TOPIC_RETURN_REQUESTED};

/* Returned quantities count once the goods are back in stock (RETURN_PROCESSED
 * onwards); pending ones (INITIATED) count against what may still be returned. */
static const of_db_stmt stmts[] = {
    {"rr_orders",
     "select id, status, (delivered_at is not null and delivered_at +"
     " $2::bigint * interval '1 millisecond' >= now()), coalesce(traceparent, '') from orders"
     " where id = any($1::uuid[]) order by id for update",
     false},
    {"rr_bought",
     "select order_id, product_id, sum(quantity), max(unit_price_cents)"
     " from order_items where order_id = any($1::uuid[]) group by 1, 2",
     false},
    {"rr_taken",
     "select r.order_id, ri.product_id, sum(ri.quantity) from returns r"
     " join return_items ri on ri.return_id = r.id where r.order_id = any($1::uuid[])"
     " and r.status <> 'REJECTED' group by 1, 2",
     false},
    {"rr_return_items",
     "select return_id, quantity, unit_price_cents from return_items"
     " where return_id = any($1::uuid[])",
     false},
    {"rr_totals",
     "select o.id, (select coalesce(sum(quantity), 0) from order_items"
     " where order_id = o.id), (select coalesce(sum(ri.quantity), 0) from returns r"
     " join return_items ri on ri.return_id = r.id where r.order_id = o.id"
     " and r.status in ('RETURN_PROCESSED', 'REFUND_INITIATED', 'REFUND_PROCESSED',"
     " 'REFUND_COMPLETED')) from orders o where o.id = any($1::uuid[])",
     false},
    /* A return.requested that made a return is on record for good (unique
     * source_event_id): a duplicate even once its inbox row is pruned. */
    {"rr_applied", "select source_event_id from returns where source_event_id = any($1::text[])",
     false},
    {"rr_insert_return",
     "insert into returns (id, order_id, status, version, reason, status_reason, correlation_id,"
     " source_event_id, traceparent) values ($1::uuid, $2::uuid, $3, 1, nullif($4, ''),"
     " nullif($5, ''), $6, $7, $8)",
     true},
    {"rr_insert_items",
     "insert into return_items (return_id, product_id, quantity, unit_price_cents)"
     " select $1::uuid, t.product_id, t.quantity, (select max(unit_price_cents) from order_items"
     " where order_id = $2::uuid and product_id = t.product_id)"
     " from unnest($3::text[], $4::integer[]) as t(product_id, quantity)",
     false},
    {"rr_restock",
     "update products p set stock = p.stock + ri.quantity, updated_at = now()"
     " from return_items ri where ri.return_id = $1::uuid and p.id = ri.product_id",
     false},
    {"rr_refund_amount", "update returns set refund_cents = $2 where id = $1::uuid", false},
    {"rr_refund",
     "insert into refunds (id, return_id, order_id, amount_cents, cause)"
     " values ($1::uuid, $2::uuid, $3::uuid, $4, 'RETURN')"
     " on conflict (return_id) do nothing",
     true},
};

/* Per order: status and whether a return is still in time. */
typedef struct loaded_order {
    char id[37];                           /* order id */
    char status[32];                       /* order status */
    bool in_window;                        /* delivered and within the return window */
    char traceparent[OF_TRACEPARENT_SIZE]; /* the order's last step's span, or "" */
} loaded_order;

typedef struct batch_state {
    of_return_step step;    /* the refund of the step being applied (its s->out) */
    loaded_order *orders;   /* orders named by return.requested events */
    size_t n_orders;        /* count */
    const PGresult *bought; /* order_id, product_id, quantity, unit price */
    const PGresult *taken;  /* order_id, product_id, quantity (not REJECTED returns) */
    const PGresult *ritems; /* return_id, quantity, unit price */
    const PGresult *totals; /* order_id, bought, returned */
    int64_t *extra_taken;   /* per bought row: quantities taken by this batch so far */
} batch_state;

static batch_state state;

static int64_t sum_rows(const PGresult *r, const char *order_id, const char *product_id, int col)
{
    int64_t n = 0;
    for (int i = 0; r != NULL && i < PQntuples(r); i++)
        if (strcmp(PQgetvalue(r, i, 0), order_id) == 0 &&
            strcmp(PQgetvalue(r, i, 1), product_id) == 0)
            n += strtoll(PQgetvalue(r, i, col), NULL, 10);
    return n;
}

static int bought_row(const batch_state *bs, const char *order_id, const char *product_id)
{
    for (int i = 0; bs->bought != NULL && i < PQntuples(bs->bought); i++)
        if (strcmp(PQgetvalue(bs->bought, i, 0), order_id) == 0 &&
            strcmp(PQgetvalue(bs->bought, i, 1), product_id) == 0)
            return i;
    return -1;
}

/* Rejects the return with reason; detail names the product when given. */
static int reject(of_step_ctx *s, const char *reason, const char *product_id)
{
    s->to = OF_RETURN_REJECTED;
    snprintf(s->reason, sizeof s->reason, "%s", reason);
    if (product_id == NULL)
        return OF_OK;
    s->detail = cJSON_CreateObject();
    if (s->detail == NULL || cJSON_AddStringToObject(s->detail, "product_id", product_id) == NULL)
        return OF_ENOMEM;
    return OF_OK;
}

/* Checks the request's items against what the order bought and what other
 * returns (this batch's too) already take back. */
static int check_items(of_step_ctx *s, const of_return_requested *req, const loaded_order *o)
{
    batch_state *bs = s->batch;
    for (size_t i = 0; i < req->n_items; i++) {
        const char *pid = req->items[i].product_id;
        int row = bought_row(bs, o->id, pid);
        if (row < 0)
            return reject(s, OF_REASON_UNKNOWN_ITEM, pid);
        int64_t bought = strtoll(PQgetvalue(bs->bought, row, 2), NULL, 10);
        int64_t taken = sum_rows(bs->taken, o->id, pid, 2) + bs->extra_taken[row];
        if (req->items[i].quantity > bought - taken) {
            int rc = reject(s, OF_REASON_QUANTITY_EXCEEDED, pid);
            if (rc == OF_OK &&
                (cJSON_AddNumberToObject(s->detail, "requested", req->items[i].quantity) == NULL ||
                 cJSON_AddNumberToObject(s->detail, "returnable", (double)(bought - taken)) ==
                     NULL))
                rc = OF_ENOMEM;
            return rc;
        }
    }
    /* Later requests of this batch see this return as pending. */
    for (size_t i = 0; i < req->n_items; i++)
        bs->extra_taken[bought_row(bs, o->id, req->items[i].product_id)] += req->items[i].quantity;
    return OF_OK;
}

/* InitiateReturn: checks the request against the order, then records the
 * return (INITIATED or REJECTED with the first reason found). */
static int initiate_return(of_step_ctx *s)
{
    const of_contract_data *d = s->it->user;
    const of_return_requested *req = &d->u.return_requested;
    const loaded_order *o = s->scope;
    const char *ids[OF_ITEMS_MAX], *qs[OF_ITEMS_MAX];
    char qbuf[OF_ITEMS_MAX][16];
    char *pids = NULL, *qtys = NULL;
    int rc;

    s->to = OF_RETURN_INITIATED;
    if (strcmp(o->status, "DELIVERED") != 0 && strcmp(o->status, "PARTIALLY_RETURNED") != 0)
        rc = reject(s, OF_REASON_ORDER_NOT_DELIVERED, NULL);
    else if (!o->in_window)
        rc = reject(s, OF_REASON_RETURN_WINDOW_EXPIRED, NULL);
    else
        rc = check_items(s, req, o);
    if (rc != OF_OK)
        return rc;
    for (size_t i = 0; i < req->n_items; i++) {
        ids[i] = req->items[i].product_id;
        snprintf(qbuf[i], sizeof qbuf[i], "%" PRId32, req->items[i].quantity);
        qs[i] = qbuf[i];
    }
    rc = OF_ENOMEM;
    pids = of_db_text_array(ids, req->n_items);
    qtys = of_db_text_array(qs, req->n_items);
    if (pids == NULL || qtys == NULL)
        goto out;
    char traceparent[OF_TRACEPARENT_SIZE];
    of_trace_format(&s->trace, traceparent);
    const char *rv[8] = {
        s->e->id,     s->e->scope_id, of_return_status_name((of_return_status)s->to),
        req->reason,  s->reason,      s->e->correlation,
        s->it->ev.id, traceparent};
    const char *iv[4] = {s->e->id, s->e->scope_id, pids, qtys};
    rc = of_db_pipeline_add(s->wp, "rr_insert_return", 8, rv);
    if (rc == OF_OK)
        rc = of_db_pipeline_add(s->wp, "rr_insert_items", 4, iv);
    if (rc == OF_OK) {
        s->input = cJSON_Duplicate(s->it->ev.data, true);
        rc = s->input != NULL ? OF_OK : OF_ENOMEM;
    }
out:
    free(pids);
    free(qtys);
    return rc;
}

/* ProcessReturn: the returned units go back to stock. */
static int process_return(of_step_ctx *s)
{
    const char *v[1] = {s->e->id};
    return of_db_pipeline_add(s->wp, "rr_restock", 1, v);
}

/* The refund for the step's return, its items at the order's price snapshot,
 * into bs->step (which the status event reads). OF_ERANGE when it is more
 * than the contract can carry. */
static int compute_refund(of_step_ctx *s)
{
    batch_state *bs = s->batch;
    const PGresult *r = bs->ritems;
    int64_t cents = 0;
    for (int i = 0; r != NULL && i < PQntuples(r); i++) {
        int64_t line;
        if (strcmp(PQgetvalue(r, i, 0), s->e->id) != 0 || PQgetisnull(r, i, 2))
            continue;
        if (__builtin_mul_overflow(strtoll(PQgetvalue(r, i, 1), NULL, 10),
                                   strtoll(PQgetvalue(r, i, 2), NULL, 10), &line) ||
            __builtin_add_overflow(cents, line, &cents) || cents > OF_CENTS_MAX)
            return OF_ERANGE;
    }
    bs->step.has_refund = true;
    bs->step.refund_cents = cents;
    s->out = &bs->step;
    return OF_OK;
}

static int initiate_refund(of_step_ctx *s)
{
    batch_state *bs = s->batch;
    char cents[32];
    int rc = compute_refund(s);
    if (rc != OF_OK)
        return rc;
    snprintf(cents, sizeof cents, "%" PRId64, bs->step.refund_cents);
    const char *v[2] = {s->e->id, cents};
    return of_db_pipeline_add(s->wp, "rr_refund_amount", 2, v);
}

/* ProcessRefund: the one refund row (unique per return). */
static int process_refund(of_step_ctx *s)
{
    batch_state *bs = s->batch;
    char id[OF_UUID_STRLEN + 1], cents[32];
    int rc = compute_refund(s);
    if (rc != OF_OK)
        return rc;
    if (of_uuid_v7(id) != 0)
        return OF_ENOMEM;
    snprintf(cents, sizeof cents, "%" PRId64, bs->step.refund_cents);
    const char *v[4] = {id, s->e->id, s->e->scope_id, cents};
    return of_db_pipeline_add(s->wp, "rr_refund", 4, v);
}

/* RefundCompleted: tells the order machine what became of the order. */
static int refund_completed(of_step_ctx *s)
{
    batch_state *bs = s->batch;
    const char *order_id = s->e->scope_id;
    of_order_status_update up;
    of_event_error err;
    of_message m = {0};
    char id[OF_UUID_STRLEN + 1], topic[256];
    int64_t bought = 0, returned = 0;
    cJSON *data = NULL;
    int rc = compute_refund(s);

    if (rc != OF_OK)
        return rc;
    for (int i = 0; bs->totals != NULL && i < PQntuples(bs->totals); i++) {
        if (strcmp(PQgetvalue(bs->totals, i, 0), order_id) == 0) {
            bought = strtoll(PQgetvalue(bs->totals, i, 1), NULL, 10);
            returned = strtoll(PQgetvalue(bs->totals, i, 2), NULL, 10);
        }
    }
    memset(&up, 0, sizeof up);
    snprintf(up.order_id, sizeof up.order_id, "%s", order_id);
    up.status = returned >= bought ? OF_ORDER_RETURNED : OF_ORDER_PARTIALLY_RETURNED;
    up.has_reason = true;
    snprintf(up.reason, sizeof up.reason, "return %s", s->e->id);
    s->detail = cJSON_CreateObject();
    if (s->detail == NULL ||
        cJSON_AddStringToObject(s->detail, "order_update", of_order_status_name(up.status)) ==
            NULL ||
        of_uuid_v7(id) != 0)
        return OF_ENOMEM;
    rc = of_order_status_update_encode(&up, &data, &err);
    if (rc != 0)
        return rc;
    of_event_attrs attrs = {id, OF_TYPE_ORDER_STATUS_UPDATE, s->b->w->source, order_id, NULL};
    rc = of_event_build(&m, of_worker_topic(s->b->w, OF_TOPIC_ORDER_STATUS, topic, sizeof topic),
                        order_id, &attrs, data, &err);
    cJSON_Delete(data);
    /* On the return's trace: the order's step is a child of this one. */
    if (rc == 0)
        rc = of_step_emit(s, &m);
    of_message_free(&m);
    return rc;
}

static const of_step_impl steps[OF_RETURN_STEP_COUNT] = {
    [OF_RETURN_STEP_INITIATE_RETURN] = {true, initiate_return},
    [OF_RETURN_STEP_PROCESS_RETURN] = {true, process_return},
    [OF_RETURN_STEP_INITIATE_REFUND] = {true, initiate_refund},
    [OF_RETURN_STEP_PROCESS_REFUND] = {true, process_refund},
    [OF_RETURN_STEP_REFUND_COMPLETED] = {true, refund_completed},
};

static int decode(void *ctx, of_worker_item *it, of_event_error *err)
{
    return of_contract_item_decode(OF_TOPIC_RETURN_REQUESTED, it, err);
}

static bool is_request(const of_contract_data *d)
{
    return strcmp(d->type, OF_TYPE_RETURN_REQUESTED) == 0;
}

/* A request creates a return of its order; a changed event drives the next step. */
static int route(void *ctx, const of_worker_item *it, of_route *r)
{
    const of_contract_data *d = it->user;
    if (is_request(d)) {
        r->kind = OF_ROUTE_CREATE;
        r->trigger = OF_RETURN_T_REQUESTED;
        r->scope_id = d->u.return_requested.order_id;
        r->scope_kind = "order";
    } else {
        r->kind = OF_ROUTE_ADVANCE;
        r->entity_id = d->u.return_status_changed.return_id;
        r->state = (int)d->u.return_status_changed.status;
        r->version = d->u.return_status_changed.version;
    }
    return OF_OK;
}

/* After the returns (locked by the machine's load): the requests' orders
 * (locked, by id) with what they bought and what is taken back, and the
 * changed events' return items and order totals. */
static int load(void *ctx, of_worker_batch *b, of_db_pipeline *p)
{
    size_t n = b->hi - b->lo, n_o = 0, n_r = 0, n_ro = 0;
    const char **orders = calloc(n + 1, sizeof *orders);
    const char **rets = calloc(n + 1, sizeof *rets);
    const char **rorders = calloc(n + 1, sizeof *rorders);
    char window[32];
    int rc = OF_ENOMEM;
    if (orders == NULL || rets == NULL || rorders == NULL)
        goto out;
    for (size_t i = b->lo; i < b->hi; i++) {
        const of_contract_data *d = b->items[i].user;
        if (b->items[i].state != OF_ITEM_PENDING)
            continue;
        if (is_request(d)) {
            orders[n_o++] = d->u.return_requested.order_id;
        } else {
            rets[n_r++] = d->u.return_status_changed.return_id;
            rorders[n_ro++] = d->u.return_status_changed.order_id;
        }
    }
    snprintf(window, sizeof window, "%" PRId64, cfg.return_window);
    rc = of_db_pipeline_add_list(p, "rr_orders", orders, n_o, window);
    if (rc == OF_OK)
        rc = of_db_pipeline_add_list(p, "rr_bought", orders, n_o, NULL);
    if (rc == OF_OK)
        rc = of_db_pipeline_add_list(p, "rr_taken", orders, n_o, NULL);
    if (rc == OF_OK)
        rc = of_db_pipeline_add_list(p, "rr_return_items", rets, n_r, NULL);
    if (rc == OF_OK)
        rc = of_db_pipeline_add_list(p, "rr_totals", rorders, n_ro, NULL);
out:
    free(orders);
    free(rets);
    free(rorders);
    return rc;
}

static int prepare(void *ctx, of_worker_batch *b, const of_db_pipeline *lp, void **out)
{
    const PGresult *ro = of_db_pipeline_result(lp, b->first_load);
    int no = ro ? PQntuples(ro) : 0;
    memset(&state, 0, sizeof state);
    state.bought = of_db_pipeline_result(lp, b->first_load + 1);
    state.taken = of_db_pipeline_result(lp, b->first_load + 2);
    state.ritems = of_db_pipeline_result(lp, b->first_load + 3);
    state.totals = of_db_pipeline_result(lp, b->first_load + 4);
    state.orders = calloc((size_t)no + 1, sizeof *state.orders);
    state.extra_taken =
        calloc((size_t)(state.bought ? PQntuples(state.bought) : 0) + 1, sizeof *state.extra_taken);
    *out = &state;
    if (state.orders == NULL || state.extra_taken == NULL)
        return OF_ENOMEM;
    for (int i = 0; i < no; i++) {
        loaded_order *o = &state.orders[state.n_orders++];
        snprintf(o->id, sizeof o->id, "%s", PQgetvalue(ro, i, 0));
        snprintf(o->status, sizeof o->status, "%s", PQgetvalue(ro, i, 1));
        o->in_window = strcmp(PQgetvalue(ro, i, 2), "t") == 0;
        snprintf(o->traceparent, sizeof o->traceparent, "%s", PQgetvalue(ro, i, 3));
    }
    return OF_OK;
}

static void *find_order(void *st, const char *order_id)
{
    batch_state *bs = st;
    for (size_t i = 0; i < bs->n_orders; i++)
        if (strcmp(bs->orders[i].id, order_id) == 0)
            return &bs->orders[i];
    return NULL;
}

/* A return without a trace of its own goes on with its order's. */
static const char *order_trace(void *scope)
{
    const loaded_order *o = scope;
    return o->traceparent[0] != '\0' ? o->traceparent : NULL;
}

static void release(void *ctx, void *st)
{
    batch_state *bs = st;
    if (bs == NULL)
        return;
    free(bs->orders);
    free(bs->extra_taken);
    bs->orders = NULL;
    bs->extra_taken = NULL;
}

int main(int argc, char **argv)
{
    static const of_worker_handler h = {
        .name = "return-requested",
        .topics = topics,
        .n_topics = sizeof topics / sizeof topics[0],
        .stmts = stmts,
        .n_stmts = sizeof stmts / sizeof stmts[0],
        .applied_stmt = "rr_applied",
        .machine = &of_return_machine,
        .steps = steps,
        .decode = decode,
        .route = route,
        .load = load,
        .prepare = prepare,
        .find_scope = find_order,
        .scope_trace = order_trace,
        .release = release,
        .item_free = of_contract_item_free,
    };
    of_config_load_or_exit(items, sizeof items / sizeof items[0], &cfg, argc, argv, NULL,
                           "orderflow-return-requested",
                           "Consumes return.requested and runs ReturnRefund (see README.md).");
    return of_worker_run(&h, &cfg.w);
}
