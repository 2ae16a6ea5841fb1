/* main.c: the return-requested worker, which runs the ReturnRefund machine.
 *
 * It consumes return.requested, which carries two types: return.requested
 * from customer service starts InitiateReturn (validated against the order:
 * delivered, within the return window, items bought and not yet returned);
 * return.status.changed, the worker's own events, drives ProcessReturn (stock
 * back), InitiateRefund (amount from the order's price snapshot),
 * ProcessRefund (the one refund row) and RefundCompleted, which publishes
 * order.status.update RETURNED or PARTIALLY_RETURNED for the order machine. */
#include "return_machine.h"

#include "contract_item.h"
#include "orderflow/config.h"
#include "orderflow/contract.h"
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
    OF_RETURN_MACHINE_STMTS,
    {"rr_orders", "select id, status, (delivered_at is not null and delivered_at +"
                  " $2::bigint * interval '1 millisecond' >= now()) from orders"
                  " where id = any($1::uuid[]) order by id for update"},
    {"rr_bought", "select order_id, product_id, sum(quantity), max(unit_price_cents)"
                  " from order_items where order_id = any($1::uuid[]) group by 1, 2"},
    {"rr_taken", "select r.order_id, ri.product_id, sum(ri.quantity) from returns r"
                 " join return_items ri on ri.return_id = r.id where r.order_id = any($1::uuid[])"
                 " and r.status <> 'REJECTED' group by 1, 2"},
    {"rr_returns", "select id, order_id, status, version, correlation_id from returns"
                   " where id = any($1::uuid[]) order by id for update"},
    {"rr_return_items", "select return_id, quantity, unit_price_cents from return_items"
                        " where return_id = any($1::uuid[])"},
    {"rr_totals", "select o.id, (select coalesce(sum(quantity), 0) from order_items"
                  " where order_id = o.id), (select coalesce(sum(ri.quantity), 0) from returns r"
                  " join return_items ri on ri.return_id = r.id where r.order_id = o.id"
                  " and r.status in ('RETURN_PROCESSED', 'REFUND_INITIATED', 'REFUND_PROCESSED',"
                  " 'REFUND_COMPLETED')) from orders o where o.id = any($1::uuid[])"},
    {"rr_insert_return",
     "insert into returns (id, order_id, status, version, reason, status_reason, correlation_id,"
     " source_event_id) values ($1::uuid, $2::uuid, $3, 1, nullif($4, ''), nullif($5, ''), $6,"
     " $7)"},
    {"rr_insert_items",
     "insert into return_items (return_id, product_id, quantity, unit_price_cents)"
     " select $1::uuid, t.product_id, t.quantity, (select max(unit_price_cents) from order_items"
     " where order_id = $2::uuid and product_id = t.product_id)"
     " from unnest($3::text[], $4::integer[]) as t(product_id, quantity)"},
    {"rr_restock", "update products p set stock = p.stock + ri.quantity, updated_at = now()"
                   " from return_items ri where ri.return_id = $1::uuid and p.id = ri.product_id"},
    {"rr_refund_amount", "update returns set refund_cents = $2 where id = $1::uuid"},
    {"rr_refund", "insert into refunds (id, return_id, order_id, amount_cents, cause)"
                  " values ($1::uuid, $2::uuid, $3::uuid, $4, 'RETURN')"
                  " on conflict (return_id) do nothing"},
};

/* Per order: status and what was bought and already taken back. */
typedef struct loaded_order {
    char id[37];     /* order id */
    char status[32]; /* order status */
    bool in_window;  /* delivered and within the return window */
} loaded_order;

/* Per return: its row, advanced in memory as the batch goes on. */
typedef struct loaded_return {
    char id[37];          /* return id */
    char order_id[37];    /* its order */
    char status[32];      /* current status */
    int version;          /* current version */
    char correlation[65]; /* ce_id of the return.requested */
} loaded_return;

typedef struct batch_state {
    of_return_step step;            /* first: read by the machine's event builder */
    loaded_order *orders;           /* orders named by return.requested events */
    size_t n_orders;                /* count */
    loaded_return *returns;         /* returns named by return.status.changed events */
    size_t n_returns;               /* count */
    const PGresult *bought;         /* order_id, product_id, quantity, unit price */
    const PGresult *taken;          /* order_id, product_id, quantity (not REJECTED returns) */
    const PGresult *ritems;         /* return_id, quantity, unit price */
    const PGresult *totals;         /* order_id, bought, returned */
    int64_t *extra_taken;           /* per bought row: quantities taken by this batch so far */
    const of_return_requested *req; /* the request InitiateReturn works on */
    loaded_order *cur_order;        /* its order */
} batch_state;

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

/* InitiateReturn: checks the request against the order, then records the
 * return (INITIATED or REJECTED with the first reason found). */
static int initiate_return(of_step_ctx *s)
{
    batch_state *bs = s->user;
    const of_return_requested *req = bs->req;
    loaded_order *o = bs->cur_order;
    char *pids = NULL, *qtys = NULL;
    const char *ids[OF_ITEMS_MAX];
    char qbuf[OF_ITEMS_MAX][16];
    const char *qs[OF_ITEMS_MAX];
    int rc = -1;

    s->to = "INITIATED";
    if (strcmp(o->status, "DELIVERED") != 0 && strcmp(o->status, "PARTIALLY_RETURNED") != 0) {
        s->to = "REJECTED";
        snprintf(s->reason, sizeof s->reason, "%s", OF_REASON_ORDER_NOT_DELIVERED);
    } else if (!o->in_window) {
        s->to = "REJECTED";
        snprintf(s->reason, sizeof s->reason, "%s", OF_REASON_RETURN_WINDOW_EXPIRED);
    }
    for (size_t i = 0; strcmp(s->to, "INITIATED") == 0 && i < req->n_items; i++) {
        int row = bought_row(bs, o->id, req->items[i].product_id);
        if (row < 0) {
            s->to = "REJECTED";
            snprintf(s->reason, sizeof s->reason, "%s", OF_REASON_UNKNOWN_ITEM);
            s->detail = cJSON_CreateObject();
            cJSON_AddStringToObject(s->detail, "product_id", req->items[i].product_id);
            break;
        }
        int64_t bought = strtoll(PQgetvalue(bs->bought, row, 2), NULL, 10);
        int64_t taken =
            sum_rows(bs->taken, o->id, req->items[i].product_id, 2) + bs->extra_taken[row];
        if (req->items[i].quantity > bought - taken) {
            s->to = "REJECTED";
            snprintf(s->reason, sizeof s->reason, "%s", OF_REASON_QUANTITY_EXCEEDED);
            s->detail = cJSON_CreateObject();
            cJSON_AddStringToObject(s->detail, "product_id", req->items[i].product_id);
            cJSON_AddNumberToObject(s->detail, "requested", req->items[i].quantity);
            cJSON_AddNumberToObject(s->detail, "returnable", (double)(bought - taken));
            break;
        }
    }
    if (strcmp(s->to, "INITIATED") == 0) {
        /* Later requests of this batch see this return as pending. */
        for (size_t i = 0; i < req->n_items; i++)
            bs->extra_taken[bought_row(bs, o->id, req->items[i].product_id)] +=
                req->items[i].quantity;
    }
    for (size_t i = 0; i < req->n_items; i++) {
        ids[i] = req->items[i].product_id;
        snprintf(qbuf[i], sizeof qbuf[i], "%" PRId32, req->items[i].quantity);
        qs[i] = qbuf[i];
    }
    pids = of_db_text_array(ids, req->n_items);
    qtys = of_db_text_array(qs, req->n_items);
    if (pids == NULL || qtys == NULL)
        goto out;
    const char *rv[7] = {s->return_id, s->order_id,       s->to,       req->reason,
                         s->reason,    s->correlation_id, s->it->ev.id};
    const char *iv[4] = {s->return_id, s->order_id, pids, qtys};
    if (of_db_pipeline_add(s->wp, "rr_insert_return", 7, rv) != 0 ||
        of_db_pipeline_add(s->wp, "rr_insert_items", 4, iv) != 0)
        goto out;
    s->input = cJSON_Duplicate(s->it->ev.data, true);
    rc = s->input == NULL ? -1 : 0;
out:
    free(pids);
    free(qtys);
    return rc;
}

/* ProcessReturn: the returned units go back to stock. */
static int process_return(of_step_ctx *s)
{
    const char *v[1] = {s->return_id};
    return of_db_pipeline_add(s->wp, "rr_restock", 1, v);
}

/* The refund for a return: its items at the order's price snapshot. */
static int64_t refund_of(const batch_state *bs, const char *return_id)
{
    int64_t cents = 0;
    for (int i = 0; bs->ritems != NULL && i < PQntuples(bs->ritems); i++)
        if (strcmp(PQgetvalue(bs->ritems, i, 0), return_id) == 0 && !PQgetisnull(bs->ritems, i, 2))
            cents += strtoll(PQgetvalue(bs->ritems, i, 1), NULL, 10) *
                     strtoll(PQgetvalue(bs->ritems, i, 2), NULL, 10);
    return cents;
}

static int initiate_refund(of_step_ctx *s)
{
    batch_state *bs = s->user;
    char cents[32];
    bs->step.has_refund = true;
    bs->step.refund_cents = refund_of(bs, s->return_id);
    snprintf(cents, sizeof cents, "%" PRId64, bs->step.refund_cents);
    const char *v[2] = {s->return_id, cents};
    return of_db_pipeline_add(s->wp, "rr_refund_amount", 2, v);
}

/* ProcessRefund: the one refund row (unique per return). */
static int process_refund(of_step_ctx *s)
{
    batch_state *bs = s->user;
    char id[OF_UUID_STRLEN + 1], cents[32];
    if (of_uuid_v7(id) != 0)
        return -1;
    bs->step.has_refund = true;
    bs->step.refund_cents = refund_of(bs, s->return_id);
    snprintf(cents, sizeof cents, "%" PRId64, bs->step.refund_cents);
    const char *v[4] = {id, s->return_id, s->order_id, cents};
    return of_db_pipeline_add(s->wp, "rr_refund", 4, v);
}

/* RefundCompleted: tells the order machine what became of the order. */
static int refund_completed(of_step_ctx *s)
{
    batch_state *bs = s->user;
    of_order_status_update up;
    of_event_error err;
    of_message m = {0};
    char id[OF_UUID_STRLEN + 1], topic[256];
    int64_t bought = 0, returned = 0;
    cJSON *data = NULL;
    int rc;

    for (int i = 0; bs->totals != NULL && i < PQntuples(bs->totals); i++) {
        if (strcmp(PQgetvalue(bs->totals, i, 0), s->order_id) == 0) {
            bought = strtoll(PQgetvalue(bs->totals, i, 1), NULL, 10);
            returned = strtoll(PQgetvalue(bs->totals, i, 2), NULL, 10);
        }
    }
    bs->step.has_refund = true;
    bs->step.refund_cents = refund_of(bs, s->return_id);
    memset(&up, 0, sizeof up);
    snprintf(up.order_id, sizeof up.order_id, "%s", s->order_id);
    up.status = returned >= bought ? OF_ORDER_RETURNED : OF_ORDER_PARTIALLY_RETURNED;
    up.has_reason = true;
    snprintf(up.reason, sizeof up.reason, "return %s", s->return_id);
    s->detail = cJSON_CreateObject();
    cJSON_AddStringToObject(s->detail, "order_update", of_order_status_name(up.status));
    if (of_uuid_v7(id) != 0)
        return -1;
    rc = of_order_status_update_encode(&up, &data, &err);
    if (rc != 0)
        return rc;
    of_event_attrs attrs = {id, OF_TYPE_ORDER_STATUS_UPDATE, s->b->w->source, s->order_id, NULL};
    rc = of_event_build(&m, of_worker_topic(s->b->w, OF_TOPIC_ORDER_STATUS, topic, sizeof topic),
                        s->order_id, &attrs, data, &err);
    cJSON_Delete(data);
    if (rc == 0)
        rc = of_worker_emit(s->b, s->wp, &m);
    of_message_free(&m);
    return rc;
}

static const of_step_impl steps[] = {
    {"InitiateReturn", initiate_return},   {"ProcessReturn", process_return},
    {"InitiateRefund", initiate_refund},   {"ProcessRefund", process_refund},
    {"RefundCompleted", refund_completed}, {NULL, NULL},
};

static int decode(void *ctx, of_worker_item *it, of_event_error *err)
{
    return of_contract_item_decode(OF_TOPIC_RETURN_REQUESTED, it, err);
}

static bool is_request(const of_contract_data *d)
{
    return strcmp(d->type, OF_TYPE_RETURN_REQUESTED) == 0;
}

static int load(void *ctx, of_worker_batch *b, of_db_pipeline *p)
{
    size_t n = b->hi - b->lo, n_o = 0, n_r = 0, n_ro = 0;
    const char **orders = calloc(n + 1, sizeof *orders);
    const char **rets = calloc(n + 1, sizeof *rets);
    const char **rorders = calloc(n + 1, sizeof *rorders);
    char *a_o = NULL, *a_r = NULL, *a_ro = NULL, window[32];
    int rc = -1;
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
    a_o = of_db_text_array(orders, n_o);
    a_r = of_db_text_array(rets, n_r);
    a_ro = of_db_text_array(rorders, n_ro);
    if (a_o == NULL || a_r == NULL || a_ro == NULL)
        goto out;
    snprintf(window, sizeof window, "%" PRId64, cfg.return_window);
    const char *v_o[2] = {a_o, window};
    const char *v_r[1] = {a_r};
    const char *v_ro[1] = {a_ro};
    /* Orders before returns, both by id: one lock order for every replica. */
    if (of_db_pipeline_add(p, "rr_orders", 2, v_o) != 0 ||
        of_db_pipeline_add(p, "rr_bought", 1, v_o) != 0 ||
        of_db_pipeline_add(p, "rr_taken", 1, v_o) != 0 ||
        of_db_pipeline_add(p, "rr_returns", 1, v_r) != 0 ||
        of_db_pipeline_add(p, "rr_return_items", 1, v_r) != 0 ||
        of_db_pipeline_add(p, "rr_totals", 1, v_ro) != 0)
        goto out;
    rc = 0;
out:
    free(orders);
    free(rets);
    free(rorders);
    free(a_o);
    free(a_r);
    free(a_ro);
    return rc;
}

static int build_state(batch_state *bs, const of_db_pipeline *lp, size_t first)
{
    const PGresult *ro = of_db_pipeline_result(lp, first);
    const PGresult *rr = of_db_pipeline_result(lp, first + 3);
    int no = ro ? PQntuples(ro) : 0, nr = rr ? PQntuples(rr) : 0;

    memset(bs, 0, sizeof *bs);
    bs->bought = of_db_pipeline_result(lp, first + 1);
    bs->taken = of_db_pipeline_result(lp, first + 2);
    bs->ritems = of_db_pipeline_result(lp, first + 4);
    bs->totals = of_db_pipeline_result(lp, first + 5);
    bs->orders = calloc((size_t)no + 1, sizeof *bs->orders);
    bs->returns = calloc((size_t)nr + 1, sizeof *bs->returns);
    bs->extra_taken =
        calloc((size_t)(bs->bought ? PQntuples(bs->bought) : 0) + 1, sizeof *bs->extra_taken);
    if (bs->orders == NULL || bs->returns == NULL || bs->extra_taken == NULL)
        return -1;
    for (int i = 0; i < no; i++) {
        loaded_order *o = &bs->orders[bs->n_orders++];
        snprintf(o->id, sizeof o->id, "%s", PQgetvalue(ro, i, 0));
        snprintf(o->status, sizeof o->status, "%s", PQgetvalue(ro, i, 1));
        o->in_window = strcmp(PQgetvalue(ro, i, 2), "t") == 0;
    }
    for (int i = 0; i < nr; i++) {
        loaded_return *r = &bs->returns[bs->n_returns++];
        snprintf(r->id, sizeof r->id, "%s", PQgetvalue(rr, i, 0));
        snprintf(r->order_id, sizeof r->order_id, "%s", PQgetvalue(rr, i, 1));
        snprintf(r->status, sizeof r->status, "%s", PQgetvalue(rr, i, 2));
        r->version = atoi(PQgetvalue(rr, i, 3));
        snprintf(r->correlation, sizeof r->correlation, "%s", PQgetvalue(rr, i, 4));
    }
    return 0;
}

static void free_state(batch_state *bs)
{
    free(bs->orders);
    free(bs->returns);
    free(bs->extra_taken);
}

static void step_ctx(of_step_ctx *s, of_worker_batch *b, of_worker_item *it, of_db_pipeline *wp,
                     batch_state *bs)
{
    memset(s, 0, sizeof *s);
    s->b = b;
    s->it = it;
    s->wp = wp;
    s->user = bs;
    bs->step.has_refund = false;
    bs->step.refund_cents = 0;
}

static int apply_request(of_worker_batch *b, of_worker_item *it, of_db_pipeline *wp,
                         batch_state *bs, const of_return_requested *req)
{
    of_step_ctx s;
    loaded_order *o = NULL;
    int rc;
    for (size_t i = 0; i < bs->n_orders; i++)
        if (strcmp(bs->orders[i].id, req->order_id) == 0)
            o = &bs->orders[i];
    if (o == NULL) {
        of_event_error_set(&it->err, OF_EVENT_ERR_INVALID_ID, "unknown order \"%s\"",
                           req->order_id);
        it->dlq_code = "UNKNOWN_ORDER";
        it->state = OF_ITEM_DEAD;
        return 0;
    }
    step_ctx(&s, b, it, wp, bs);
    bs->req = req;
    bs->cur_order = o;
    if (of_uuid_v7(s.entity_id) != 0)
        return -1;
    memcpy(s.return_id, s.entity_id, sizeof s.return_id);
    snprintf(s.order_id, sizeof s.order_id, "%s", o->id);
    snprintf(s.correlation_id, sizeof s.correlation_id, "%s", it->ev.id);
    rc = of_machine_apply(&of_return_machine, steps, &s, OF_STATE_NONE, OF_TYPE_RETURN_REQUESTED);
    it->outcome = s.to;
    of_step_ctx_free(&s);
    if (rc == 0)
        it->state = OF_ITEM_DONE;
    return rc;
}

static int apply_changed(of_worker_batch *b, of_worker_item *it, of_db_pipeline *wp,
                         batch_state *bs, const of_return_status_changed *c)
{
    of_step_ctx s;
    loaded_return *r = NULL;
    int rc;
    for (size_t i = 0; i < bs->n_returns; i++)
        if (strcmp(bs->returns[i].id, c->return_id) == 0)
            r = &bs->returns[i];
    if (r == NULL) {
        of_event_error_set(&it->err, OF_EVENT_ERR_INVALID_ID, "unknown return \"%s\"",
                           c->return_id);
        it->dlq_code = "UNKNOWN_RETURN";
        it->state = OF_ITEM_DEAD;
        return 0;
    }
    it->state = OF_ITEM_DONE;
    /* Only the event announcing the return's current state drives the next step. */
    if (strcmp(r->status, of_return_status_name(c->status)) != 0 || r->version != c->version ||
        !of_machine_runs(&of_return_machine, steps, r->status, OF_TRIGGER_AUTO)) {
        it->outcome = "ignored";
        return 0;
    }
    step_ctx(&s, b, it, wp, bs);
    snprintf(s.entity_id, sizeof s.entity_id, "%s", r->id);
    snprintf(s.return_id, sizeof s.return_id, "%s", r->id);
    snprintf(s.order_id, sizeof s.order_id, "%s", r->order_id);
    snprintf(s.correlation_id, sizeof s.correlation_id, "%s", r->correlation);
    s.version = r->version;
    rc = of_machine_apply(&of_return_machine, steps, &s, r->status, OF_TRIGGER_AUTO);
    if (rc == OF_MACHINE_OK) {
        snprintf(r->status, sizeof r->status, "%s", s.to);
        r->version = s.new_version;
        it->outcome = "applied";
    }
    of_step_ctx_free(&s);
    return rc;
}

static int apply(void *ctx, of_worker_batch *b, const of_db_pipeline *lp, size_t first,
                 of_db_pipeline *wp)
{
    batch_state bs;
    int rc = build_state(&bs, lp, first);
    for (size_t i = b->lo; rc == 0 && i < b->hi; i++) {
        of_worker_item *it = &b->items[i];
        const of_contract_data *d = it->user;
        if (it->state != OF_ITEM_PENDING)
            continue;
        if (is_request(d))
            rc = apply_request(b, it, wp, &bs, &d->u.return_requested);
        else
            rc = apply_changed(b, it, wp, &bs, &d->u.return_status_changed);
    }
    free_state(&bs);
    return rc < 0 ? rc : (rc > 0 ? -1 : 0);
}

int main(int argc, char **argv)
{
    char err[256];
    static const of_worker_handler h = {
        "return-requested",
        topics,
        1,
        stmts,
        sizeof stmts / sizeof stmts[0],
        decode,
        load,
        apply,
        of_contract_item_free,
        NULL,
        NULL,
        NULL,
    };
    if (of_machine_validate(&of_return_machine, err, sizeof err) != 0) {
        fprintf(stderr, "return machine table is invalid: %s\n", err);
        return 70;
    }
    of_config_load_or_exit(items, sizeof items / sizeof items[0], &cfg, argc, argv, NULL,
                           "orderflow-return-requested",
                           "Consumes return.requested and runs ReturnRefund (see README.md).");
    return of_worker_run(&h, &cfg.w);
}
