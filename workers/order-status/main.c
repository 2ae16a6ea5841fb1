/* main.c: the order-status worker, which advances every order after its creation.
 *
 * It consumes order.status. Its own order.status.changed events drive the
 * automatic OrderProcess steps (CREATED -> UpdateInventory, INVENTORY_RESERVED
 * -> OrderCompleted); order.status.update events from other services drive
 * the OrderUpdate lifecycle (PAID, SHIPPED, DELIVERED, CANCELLED with
 * compensation, RETURNED / PARTIALLY_RETURNED from the return machine).
 * Updates the machine does not allow, or whose expected_version differs, are
 * recorded in the order's history as rejected and change nothing. Changed
 * events that no longer match the order (stale, duplicated, out of order)
 * are acknowledged without effect. */
#include "deadlines.h"
#include "order_machine.h"

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
    of_worker_settings w;     /* common worker settings */
    int64_t payment_deadline; /* ms a CONFIRMED order may wait for PAID */
    int64_t deadline_scan;    /* ms between scans for due deadlines */
} settings;

static const of_config_item items[] = {
    OF_WORKER_CONFIG(settings, w),
    {"payment-deadline", "ORDERFLOW_PAYMENT_DEADLINE", "payment-deadline", OF_CFG_MS, "30m",
     "time a CONFIRMED order may wait for PAID before it is cancelled (PAYMENT_TIMEOUT)",
     offsetof(settings, payment_deadline), 1000, 30LL * 24 * 3600 * 1000},
    {"deadline-scan-interval", "ORDERFLOW_DEADLINE_SCAN_INTERVAL", "deadline-scan-interval",
     OF_CFG_MS, "1s", "time between scans for expired deadlines", offsetof(settings, deadline_scan),
     100, 3600000},
};

static const char *const topics[] = {OF_TOPIC_ORDER_STATUS};

static const of_db_stmt stmts[] = {
    OF_ORDER_MACHINE_STMTS,
    {"os_orders", "select id, status, version, correlation_id, customer_id from orders"
                  " where id = any($1::uuid[]) order by id for update"},
    {"os_items", "select order_id, product_id, quantity, reserved from order_items"
                 " where order_id = any($1::uuid[]) order by order_id, line"},
    {"os_products", "select id, stock from products where id in (select product_id from"
                    " order_items where order_id = any($1::uuid[])) order by id for update"},
    {"os_reserve", "update products p set stock = p.stock - t.quantity, updated_at = now()"
                   " from unnest($1::text[], $2::integer[]) as t(product_id, quantity)"
                   " where p.id = t.product_id"},
    {"os_mark_reserved", "update order_items set reserved = $2 where order_id = $1::uuid"},
    {"os_release", "update products p set stock = p.stock + i.quantity, updated_at = now()"
                   " from order_items i where i.order_id = $1::uuid and i.reserved"
                   " and p.id = i.product_id"},
    {"os_confirmed", "update orders set confirmed_at = now() where id = $1::uuid"},
    {"os_delivered", "update orders set delivered_at = now() where id = $1::uuid"},
    {"os_deadline_add", "insert into deadlines (order_id, kind, due_at) values ($1::uuid,"
                        " 'PAYMENT', now() + $2::bigint * interval '1 millisecond')"
                        " on conflict (order_id, kind) do nothing"},
    {"os_deadline_cancel", "update deadlines set cancelled_at = now() where order_id = $1::uuid"
                           " and kind = 'PAYMENT' and fired_at is null and cancelled_at is null"},
    {"os_cancel_refund", "insert into refunds (id, order_id, amount_cents, cause)"
                         " select $2::uuid, id, total_cents, 'CANCELLATION' from orders"
                         " where id = $1::uuid"
                         " on conflict (order_id) where return_id is null do nothing"},
};

/* Stock of one product locked for this transaction, kept current in memory. */
typedef struct stock {
    const char *id; /* product id (points into the load result) */
    int64_t stock;  /* units left after the steps applied so far */
} stock;

/* One order as loaded, with its item rows. */
typedef struct loaded_order {
    of_order_state st; /* id, status, version (advanced in memory), ids */
    int item_lo;       /* first row in the items result */
    int item_hi;       /* one past the last row */
} loaded_order;

/* The batch's view of the database, shared by the steps. */
typedef struct batch_state {
    loaded_order *orders;  /* orders the batch names */
    size_t n_orders;       /* count */
    const PGresult *items; /* order_id, product_id, quantity, reserved */
    stock *stocks;         /* products locked for reservations */
    size_t n_stocks;       /* count */
    int64_t deadline_ms;   /* payment deadline */
    loaded_order *cur;     /* order of the step being applied */
} batch_state;

static settings cfg;

static stock *find_stock(batch_state *bs, const char *id)
{
    for (size_t i = 0; i < bs->n_stocks; i++)
        if (strcmp(bs->stocks[i].id, id) == 0)
            return &bs->stocks[i];
    return NULL;
}

/* UpdateInventory: all items or none. The products are locked, so the check
 * and the decrement see the same stock; the in-memory copy carries the
 * decrement to later orders of the same batch. */
static int update_inventory(of_step_ctx *s)
{
    batch_state *bs = s->user;
    loaded_order *o = bs->cur;
    const PGresult *r = bs->items;
    char *pids = NULL, *qtys = NULL;
    const char **ids = NULL, **qs = NULL;
    char(*qbuf)[16] = NULL;
    int n = o->item_hi - o->item_lo;
    int rc = -1;

    for (int i = o->item_lo; i < o->item_hi; i++) {
        stock *st = find_stock(bs, PQgetvalue(r, i, 1));
        int64_t q = strtoll(PQgetvalue(r, i, 2), NULL, 10);
        if (st == NULL || st->stock < q) {
            s->to = "REJECTED";
            snprintf(s->reason, sizeof s->reason, "%s", OF_REASON_OUT_OF_STOCK);
            s->detail = cJSON_CreateObject();
            cJSON_AddStringToObject(s->detail, "product_id", PQgetvalue(r, i, 1));
            cJSON_AddNumberToObject(s->detail, "requested", (double)q);
            cJSON_AddNumberToObject(s->detail, "available", st ? (double)st->stock : 0);
            return 0;
        }
    }
    ids = calloc((size_t)n + 1, sizeof *ids);
    qs = calloc((size_t)n + 1, sizeof *qs);
    qbuf = calloc((size_t)n + 1, sizeof *qbuf);
    if (ids == NULL || qs == NULL || qbuf == NULL)
        goto out;
    for (int i = 0; i < n; i++) {
        stock *st = find_stock(bs, PQgetvalue(r, o->item_lo + i, 1));
        st->stock -= strtoll(PQgetvalue(r, o->item_lo + i, 2), NULL, 10);
        ids[i] = PQgetvalue(r, o->item_lo + i, 1);
        snprintf(qbuf[i], sizeof qbuf[i], "%s", PQgetvalue(r, o->item_lo + i, 2));
        qs[i] = qbuf[i];
    }
    pids = of_db_text_array(ids, (size_t)n);
    qtys = of_db_text_array(qs, (size_t)n);
    if (pids == NULL || qtys == NULL)
        goto out;
    const char *v1[2] = {pids, qtys};
    const char *v2[2] = {s->entity_id, "true"};
    if (of_db_pipeline_add(s->wp, "os_reserve", 2, v1) != 0 ||
        of_db_pipeline_add(s->wp, "os_mark_reserved", 2, v2) != 0)
        goto out;
    s->to = "INVENTORY_RESERVED";
    rc = 0;
out:
    free(ids);
    free(qs);
    free(qbuf);
    free(pids);
    free(qtys);
    return rc;
}

/* OrderCompleted: OrderProcess succeeds, OrderUpdate starts, and the payment
 * deadline is armed. */
static int order_completed(of_step_ctx *s)
{
    batch_state *bs = s->user;
    char ms[32];
    snprintf(ms, sizeof ms, "%" PRId64, bs->deadline_ms);
    const char *v1[1] = {s->entity_id};
    const char *v2[2] = {s->entity_id, ms};
    if (of_db_pipeline_add(s->wp, "os_confirmed", 1, v1) != 0 ||
        of_db_pipeline_add(s->wp, "os_deadline_add", 2, v2) != 0)
        return -1;
    return 0;
}

static int record_payment(of_step_ctx *s)
{
    const char *v[1] = {s->entity_id};
    return of_db_pipeline_add(s->wp, "os_deadline_cancel", 1, v);
}

static int record_delivery(of_step_ctx *s)
{
    const char *v[1] = {s->entity_id};
    return of_db_pipeline_add(s->wp, "os_delivered", 1, v);
}

/* Gives reserved units back, in the database and in the batch's view. */
static int release_stock(of_step_ctx *s)
{
    batch_state *bs = s->user;
    loaded_order *o = bs->cur;
    const char *v1[1] = {s->entity_id};
    const char *v2[2] = {s->entity_id, "false"};
    for (int i = o->item_lo; i < o->item_hi; i++) {
        stock *st = find_stock(bs, PQgetvalue(bs->items, i, 1));
        if (st != NULL && strcmp(PQgetvalue(bs->items, i, 3), "t") == 0)
            st->stock += strtoll(PQgetvalue(bs->items, i, 2), NULL, 10);
    }
    if (of_db_pipeline_add(s->wp, "os_release", 1, v1) != 0 ||
        of_db_pipeline_add(s->wp, "os_mark_reserved", 2, v2) != 0 ||
        of_db_pipeline_add(s->wp, "os_deadline_cancel", 1, v1) != 0)
        return -1;
    return 0;
}

/* CancelOrder: compensation. Reserved stock goes back; a paid order also
 * gets its one cancellation refund (the unique index makes a second one
 * impossible). */
static int cancel_order(of_step_ctx *s)
{
    char id[OF_UUID_STRLEN + 1];
    const of_contract_data *d = s->it->user;
    if (d->u.order_status_update.has_reason)
        snprintf(s->reason, sizeof s->reason, "%s", d->u.order_status_update.reason);
    if (release_stock(s) != 0)
        return -1;
    if (strcmp(s->t->from, "PAID") == 0) {
        if (of_uuid_v7(id) != 0)
            return -1;
        const char *v[2] = {s->entity_id, id};
        return of_db_pipeline_add(s->wp, "os_cancel_refund", 2, v);
    }
    return 0;
}

static int payment_timeout(of_step_ctx *s)
{
    snprintf(s->reason, sizeof s->reason, "%s", OF_REASON_PAYMENT_TIMEOUT);
    return release_stock(s);
}

static const of_step_impl steps[] = {
    {"UpdateInventory", update_inventory},
    {"OrderCompleted", order_completed},
    {"RecordPayment", record_payment},
    {"RecordShipment", NULL},
    {"RecordDelivery", record_delivery},
    {"CancelOrder", cancel_order},
    {"PaymentTimeout", payment_timeout},
    {"ApplyReturn", NULL},
    {NULL, NULL},
};

static int decode(void *ctx, of_worker_item *it, of_event_error *err)
{
    return of_contract_item_decode(OF_TOPIC_ORDER_STATUS, it, err);
}

static const char *order_id_of(const of_contract_data *d)
{
    if (strcmp(d->type, OF_TYPE_ORDER_STATUS_CHANGED) == 0)
        return d->u.order_status_changed.order_id;
    if (strcmp(d->type, OF_TYPE_ORDER_DEADLINE_EXPIRED) == 0)
        return d->u.deadline_expired.order_id;
    return d->u.order_status_update.order_id;
}

/* Reservations and releases need the products locked: only for orders whose
 * event may move stock. */
static bool moves_stock(const of_contract_data *d)
{
    if (strcmp(d->type, OF_TYPE_ORDER_STATUS_CHANGED) == 0)
        return d->u.order_status_changed.status == OF_ORDER_CREATED;
    if (strcmp(d->type, OF_TYPE_ORDER_DEADLINE_EXPIRED) == 0)
        return true;
    return d->u.order_status_update.status == OF_ORDER_CANCELLED;
}

static int load(void *ctx, of_worker_batch *b, of_db_pipeline *p)
{
    size_t n = b->hi - b->lo, n_all = 0, n_stock = 0;
    const char **all = calloc(n + 1, sizeof *all);
    const char **st = calloc(n + 1, sizeof *st);
    char *a1 = NULL, *a2 = NULL;
    int rc = -1;
    if (all == NULL || st == NULL)
        goto out;
    for (size_t i = b->lo; i < b->hi; i++) {
        const of_contract_data *d = b->items[i].user;
        if (b->items[i].state != OF_ITEM_PENDING)
            continue;
        all[n_all++] = order_id_of(d);
        if (moves_stock(d))
            st[n_stock++] = order_id_of(d);
    }
    a1 = of_db_text_array(all, n_all);
    a2 = of_db_text_array(st, n_stock);
    if (a1 == NULL || a2 == NULL)
        goto out;
    const char *v1[1] = {a1};
    const char *v2[1] = {a2};
    if (of_db_pipeline_add(p, "os_orders", 1, v1) != 0 ||
        of_db_pipeline_add(p, "os_items", 1, v1) != 0 ||
        of_db_pipeline_add(p, "os_products", 1, v2) != 0)
        goto out;
    rc = 0;
out:
    free(all);
    free(st);
    free(a1);
    free(a2);
    return rc;
}

static loaded_order *find_order(batch_state *bs, const char *id)
{
    for (size_t i = 0; i < bs->n_orders; i++)
        if (strcmp(bs->orders[i].st.id, id) == 0)
            return &bs->orders[i];
    return NULL;
}

static int build_state(batch_state *bs, const of_db_pipeline *lp, size_t first)
{
    const PGresult *ro = of_db_pipeline_result(lp, first);
    const PGresult *ri = of_db_pipeline_result(lp, first + 1);
    const PGresult *rp = of_db_pipeline_result(lp, first + 2);
    int no = ro ? PQntuples(ro) : 0, np = rp ? PQntuples(rp) : 0;

    memset(bs, 0, sizeof *bs);
    bs->items = ri;
    bs->deadline_ms = cfg.payment_deadline;
    bs->orders = calloc((size_t)no + 1, sizeof *bs->orders);
    bs->stocks = calloc((size_t)np + 1, sizeof *bs->stocks);
    if (bs->orders == NULL || bs->stocks == NULL)
        return -1;
    for (int i = 0; i < no; i++) {
        loaded_order *o = &bs->orders[bs->n_orders++];
        snprintf(o->st.id, sizeof o->st.id, "%s", PQgetvalue(ro, i, 0));
        snprintf(o->st.status, sizeof o->st.status, "%s", PQgetvalue(ro, i, 1));
        o->st.version = atoi(PQgetvalue(ro, i, 2));
        snprintf(o->st.correlation, sizeof o->st.correlation, "%s", PQgetvalue(ro, i, 3));
        snprintf(o->st.customer_id, sizeof o->st.customer_id, "%s", PQgetvalue(ro, i, 4));
        o->item_lo = o->item_hi = 0;
        for (int k = 0; ri != NULL && k < PQntuples(ri); k++) {
            if (strcmp(PQgetvalue(ri, k, 0), o->st.id) != 0)
                continue;
            if (o->item_hi == 0)
                o->item_lo = k;
            o->item_hi = k + 1;
        }
    }
    for (int i = 0; i < np; i++) {
        bs->stocks[i].id = PQgetvalue(rp, i, 0);
        bs->stocks[i].stock = strtoll(PQgetvalue(rp, i, 1), NULL, 10);
    }
    bs->n_stocks = (size_t)np;
    return 0;
}

/* Prepares s for one step on order o. */
static void step_ctx(of_step_ctx *s, of_worker_batch *b, of_worker_item *it, of_db_pipeline *wp,
                     batch_state *bs, loaded_order *o)
{
    memset(s, 0, sizeof *s);
    s->b = b;
    s->it = it;
    s->wp = wp;
    s->user = bs;
    bs->cur = o;
    snprintf(s->entity_id, sizeof s->entity_id, "%s", o->st.id);
    snprintf(s->order_id, sizeof s->order_id, "%s", o->st.id);
    snprintf(s->correlation_id, sizeof s->correlation_id, "%s", o->st.correlation);
    s->version = o->st.version;
}

/* Applies (from = the order's status, trigger) and advances the in-memory order. */
static int transition(of_step_ctx *s, loaded_order *o, const char *trigger)
{
    int rc = of_machine_apply(&of_order_machine, steps, s, o->st.status, trigger);
    if (rc == OF_MACHINE_OK) {
        snprintf(o->st.status, sizeof o->st.status, "%s", s->to);
        o->st.version = s->new_version;
    }
    return rc;
}

static int apply_changed(of_step_ctx *s, of_worker_item *it, loaded_order *o,
                         const of_order_status_changed *c)
{
    /* Only the event announcing the order's current state drives the next
     * step; any other is stale or a repeat and changes nothing. */
    if (strcmp(o->st.status, of_order_status_name(c->status)) != 0 || o->st.version != c->version ||
        !of_machine_runs(&of_order_machine, steps, o->st.status, OF_TRIGGER_AUTO)) {
        it->outcome = "ignored";
        return 0;
    }
    int rc = transition(s, o, OF_TRIGGER_AUTO);
    it->outcome = "applied";
    return rc == OF_MACHINE_ILLEGAL ? 0 : rc;
}

static int apply_update(of_step_ctx *s, of_worker_item *it, loaded_order *o,
                        const of_order_status_update *u)
{
    const char *status = of_order_status_name(u->status);
    char why[160];
    int rc;
    if (u->has_expected_version && u->expected_version != o->st.version) {
        snprintf(why, sizeof why, "expected version %" PRId32 ", order is at version %d",
                 u->expected_version, o->st.version);
        it->outcome = "rejected";
        return of_machine_record(&of_order_machine, s, "rejected", o->st.status, status, why);
    }
    rc = transition(s, o, status);
    if (rc == OF_MACHINE_ILLEGAL) {
        snprintf(why, sizeof why, "%s is not allowed from %s", status, o->st.status);
        it->outcome = "rejected";
        return of_machine_record(&of_order_machine, s, "rejected", o->st.status, status, why);
    }
    it->outcome = "applied";
    return rc;
}

/* A payment deadline fired: PaymentTimeout if the order still waits for
 * payment; otherwise the deadline no longer applies, which the history
 * records as ignored. */
static int apply_deadline(of_step_ctx *s, of_worker_item *it, loaded_order *o)
{
    char why[128];
    int rc;
    if (of_machine_find(&of_order_machine, o->st.status, OF_TRIGGER_PAYMENT_TIMEOUT, NULL) ==
        NULL) {
        snprintf(why, sizeof why, "payment deadline passed while the order was %s", o->st.status);
        it->outcome = "ignored";
        return of_machine_record(&of_order_machine, s, "ignored", o->st.status,
                                 OF_TRIGGER_PAYMENT_TIMEOUT, why);
    }
    rc = transition(s, o, OF_TRIGGER_PAYMENT_TIMEOUT);
    it->outcome = "applied";
    return rc;
}

static int apply(void *ctx, of_worker_batch *b, const of_db_pipeline *lp, size_t first,
                 of_db_pipeline *wp)
{
    batch_state bs;
    int rc = 0;
    if (build_state(&bs, lp, first) != 0) {
        rc = -1;
        goto out;
    }
    for (size_t i = b->lo; i < b->hi; i++) {
        of_worker_item *it = &b->items[i];
        const of_contract_data *d = it->user;
        loaded_order *o;
        of_step_ctx s;
        if (it->state != OF_ITEM_PENDING)
            continue;
        o = find_order(&bs, order_id_of(d));
        if (o == NULL) {
            of_event_error_set(&it->err, OF_EVENT_ERR_INVALID_ID, "unknown order \"%s\"",
                               order_id_of(d));
            it->dlq_code = "UNKNOWN_ORDER";
            it->state = OF_ITEM_DEAD;
            continue;
        }
        step_ctx(&s, b, it, wp, &bs, o);
        if (strcmp(d->type, OF_TYPE_ORDER_STATUS_CHANGED) == 0)
            rc = apply_changed(&s, it, o, &d->u.order_status_changed);
        else if (strcmp(d->type, OF_TYPE_ORDER_DEADLINE_EXPIRED) == 0)
            rc = apply_deadline(&s, it, o);
        else
            rc = apply_update(&s, it, o, &d->u.order_status_update);
        of_step_ctx_free(&s);
        if (rc != 0)
            goto out;
        it->state = OF_ITEM_DONE;
    }
out:
    free(bs.orders);
    free(bs.stocks);
    return rc;
}

static deadline_scanner scanner;

/* Metrics of the payment deadlines, next to the runtime's on /metrics. */
static const char pending_deadlines_sql[] =
    "select count(*) from deadlines where fired_at is null and cancelled_at is null";
/* Deadlines that are due but not fired yet: the deadline timer's lag. */
static const char overdue_deadlines_sql[] =
    "select count(*) from deadlines where fired_at is null and cancelled_at is null"
    " and due_at < now() - interval '5 seconds'";
static of_metric *deadlines_fired;

static void collect_deadlines(void *arg, of_metrics *m)
{
    of_metric_set(deadlines_fired, NULL, (double)scanner.fired_total);
    of_metric_set(of_metrics_find(m, "orderflow_db_reconnects_total"),
                  (const char *const[]){"deadlines"}, (double)scanner.db.reconnects);
}

static int start(void *ctx, of_worker *w)
{
    deadlines_fired = of_metrics_counter(&w->metrics, "orderflow_deadlines_fired_total",
                                         "Payment deadlines fired by this process.", NULL, 0);
    if (of_worker_gauge_query(w, "orderflow_deadlines_pending",
                              "Payment deadlines armed, not yet fired or cancelled (all replicas), "
                              "refreshed every 5 s.",
                              pending_deadlines_sql) != 0 ||
        of_worker_gauge_query(w, "orderflow_deadlines_overdue",
                              "Payment deadlines more than 5 s past due and not fired yet (all "
                              "replicas): non-zero means no deadline timer is keeping up.",
                              overdue_deadlines_sql) != 0 ||
        of_metrics_add_collector(&w->metrics, collect_deadlines, NULL) != 0)
        return -1;
    return deadline_scanner_start(&scanner, w, (uint64_t)cfg.deadline_scan);
}

static void stop(void *ctx, of_worker *w)
{
    deadline_scanner_stop(&scanner);
}

int main(int argc, char **argv)
{
    char err[256];
    static const of_worker_handler h = {
        "order-status",
        topics,
        1,
        stmts,
        sizeof stmts / sizeof stmts[0],
        decode,
        load,
        apply,
        of_contract_item_free,
        start,
        stop,
        NULL,
    };
    if (of_machine_validate(&of_order_machine, err, sizeof err) != 0) {
        fprintf(stderr, "order machine table is invalid: %s\n", err);
        return 70;
    }
    of_config_load_or_exit(items, sizeof items / sizeof items[0], &cfg, argc, argv, NULL,
                           "orderflow-order-status",
                           "Consumes order.status and advances orders (see README.md).");
    return of_worker_run(&h, &cfg.w);
}
