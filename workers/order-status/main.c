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
#include "domain/order_machine.h"

#include "domain/contract_item.h"
#include "orderflow/config.h"
#include "domain/contract.h"
#include "domain/retention.h"
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
    int64_t deadline_keep;    /* ms a fired or cancelled deadline is kept */
} settings;

static const of_config_item items[] = {
    OF_WORKER_CONFIG(settings, w),
    {"payment-deadline", "ORDERFLOW_PAYMENT_DEADLINE", "payment-deadline", OF_CFG_MS, "30m",
     "time a CONFIRMED order may wait for PAID before it is cancelled (PAYMENT_TIMEOUT)",
     offsetof(settings, payment_deadline), 1000, 30LL * 24 * 3600 * 1000},
    {"deadline-scan-interval", "ORDERFLOW_DEADLINE_SCAN_INTERVAL", "deadline-scan-interval",
     OF_CFG_MS, "1s", "time between scans for expired deadlines", offsetof(settings, deadline_scan),
     100, 3600000},
    OF_RETENTION_DEADLINES_CONFIG(offsetof(settings, deadline_keep)),
};

static const char *const topics[] = {OF_TOPIC_ORDER_STATUS};

static const of_db_stmt stmts[] = {
    {"os_items",
     "select order_id, product_id, quantity, reserved from order_items"
     " where order_id = any($1::uuid[]) order by order_id, line",
     false},
    {"os_products",
     "select id, stock from products where id = any(array(select product_id from order_items"
     " where order_id = any($1::uuid[]))) order by id for update",
     false},
    {"os_release",
     "update products p set stock = p.stock + i.quantity, updated_at = now()"
     " from order_items i where i.order_id = $1::uuid and i.reserved"
     " and p.id = i.product_id",
     false},
    {"os_deadline_cancel",
     "update deadlines set cancelled_at = now() where order_id = $1::uuid"
     " and kind = 'PAYMENT' and fired_at is null and cancelled_at is null",
     false},
    {"os_cancel_refund",
     "insert into refunds (id, order_id, amount_cents, cause)"
     " select $2::uuid, id, total_cents, 'CANCELLATION' from orders"
     " where id = $1::uuid"
     " on conflict (order_id) where return_id is null do nothing",
     false},
};

/* Row sets (one statement per wave each), in the order they run. Stock
 * moves are summed per product, so many orders of one product in a batch
 * update its row once. */
enum { SET_STOCK, SET_RESERVED, SET_DEADLINE, SET_COUNT };
static const of_worker_set sets[SET_COUNT] = {
    [SET_STOCK] = {{"os_stock",
                    "update products p set stock = p.stock + d.delta, updated_at = now()"
                    " from (select product_id, sum(delta) as delta from unnest($1::text[],"
                    " $2::bigint[]) as t(product_id, delta) group by product_id) d"
                    " where p.id = any($1) and p.id = d.product_id",
                    false},
                   2},
    [SET_RESERVED] = {{"os_mark_reserved",
                       "update order_items i set reserved = t.reserved from unnest($1::uuid[],"
                       " $2::boolean[]) as t(order_id, reserved) where i.order_id = any($1)"
                       " and i.order_id = t.order_id",
                       false},
                      2},
    [SET_DEADLINE] = {{"os_deadline_add",
                       "insert into deadlines (order_id, kind, due_at) select t.order_id,"
                       " 'PAYMENT', now() + t.ms * interval '1 millisecond' from"
                       " unnest($1::uuid[], $2::bigint[]) as t(order_id, ms)"
                       " on conflict (order_id, kind) do nothing",
                       true},
                      2},
};

/* Stock of one product locked for this transaction, kept current in memory. */
typedef struct stock {
    const char *id; /* product id (points into the load result) */
    int64_t stock;  /* units left after the steps applied so far */
} stock;

/* The batch's view of the database, shared by the steps. */
typedef struct batch_state {
    const PGresult *items; /* order_id, product_id, quantity, reserved; by order */
    stock *stocks;         /* products locked for reservations */
    size_t n_stocks;       /* count */
    int64_t deadline_ms;   /* payment deadline */
} batch_state;

static settings cfg;
static batch_state state;

static stock *find_stock(batch_state *bs, const char *id)
{
    for (size_t i = 0; i < bs->n_stocks; i++)
        if (strcmp(bs->stocks[i].id, id) == 0)
            return &bs->stocks[i];
    return NULL;
}

/* The item rows [*lo, *hi) of an order in the items result. */
static void order_items(const batch_state *bs, const char *order_id, int *lo, int *hi)
{
    *lo = *hi = 0;
    for (int k = 0; bs->items != NULL && k < PQntuples(bs->items); k++) {
        if (strcmp(PQgetvalue(bs->items, k, 0), order_id) != 0)
            continue;
        if (*hi == 0)
            *lo = k;
        *hi = k + 1;
    }
}

/* UpdateInventory: all items or none. The products are locked, so the check
 * and the decrement see the same stock; the in-memory copy carries the
 * decrement to later orders of the same batch. */
static int update_inventory(of_step_ctx *s)
{
    batch_state *bs = s->batch;
    const PGresult *r = bs->items;
    int lo, hi, rc;

    order_items(bs, s->e->id, &lo, &hi);
    for (int i = lo; i < hi; i++) {
        stock *st = find_stock(bs, PQgetvalue(r, i, 1));
        int64_t q = strtoll(PQgetvalue(r, i, 2), NULL, 10);
        if (st == NULL || st->stock < q) {
            s->to = OF_ORDER_REJECTED;
            snprintf(s->reason, sizeof s->reason, "%s", OF_REASON_OUT_OF_STOCK);
            s->detail = cJSON_CreateObject();
            if (s->detail == NULL ||
                cJSON_AddStringToObject(s->detail, "product_id", PQgetvalue(r, i, 1)) == NULL ||
                cJSON_AddNumberToObject(s->detail, "requested", (double)q) == NULL ||
                cJSON_AddNumberToObject(s->detail, "available", st ? (double)st->stock : 0) == NULL)
                return OF_ENOMEM;
            return OF_OK;
        }
    }
    for (int i = lo; i < hi; i++) {
        char delta[24];
        int64_t q = strtoll(PQgetvalue(r, i, 2), NULL, 10);
        find_stock(bs, PQgetvalue(r, i, 1))->stock -= q;
        snprintf(delta, sizeof delta, "%" PRId64, -q);
        const char *v[2] = {PQgetvalue(r, i, 1), delta};
        rc = of_step_rows(s, SET_STOCK, v);
        if (rc != OF_OK)
            return rc;
    }
    const char *v[2] = {s->e->id, "true"};
    s->to = OF_ORDER_INVENTORY_RESERVED;
    return of_step_rows(s, SET_RESERVED, v);
}

/* OrderCompleted: OrderProcess succeeds, OrderUpdate starts, and the payment
 * deadline is armed (confirmed_at is set with the status, by the machine). */
static int order_completed(of_step_ctx *s)
{
    batch_state *bs = s->batch;
    char ms[32];
    snprintf(ms, sizeof ms, "%" PRId64, bs->deadline_ms);
    const char *v[2] = {s->e->id, ms};
    return of_step_rows(s, SET_DEADLINE, v);
}

static int record_payment(of_step_ctx *s)
{
    const char *v[1] = {s->e->id};
    return of_db_pipeline_add(s->wp, "os_deadline_cancel", 1, v);
}

/* Gives reserved units back, in the database and in the batch's view. */
static int release_stock(of_step_ctx *s)
{
    batch_state *bs = s->batch;
    const char *v1[1] = {s->e->id};
    const char *v2[2] = {s->e->id, "false"};
    int lo, hi, rc;
    order_items(bs, s->e->id, &lo, &hi);
    for (int i = lo; i < hi; i++) {
        stock *st = find_stock(bs, PQgetvalue(bs->items, i, 1));
        if (st != NULL && strcmp(PQgetvalue(bs->items, i, 3), "t") == 0)
            st->stock += strtoll(PQgetvalue(bs->items, i, 2), NULL, 10);
    }
    rc = of_db_pipeline_add(s->wp, "os_release", 1, v1);
    if (rc == OF_OK)
        rc = of_step_rows(s, SET_RESERVED, v2);
    if (rc == OF_OK)
        rc = of_db_pipeline_add(s->wp, "os_deadline_cancel", 1, v1);
    return rc;
}

/* CancelOrder: compensation. Reserved stock goes back; a paid order also
 * gets its one cancellation refund (the unique index makes a second one
 * impossible). */
static int cancel_order(of_step_ctx *s)
{
    char id[OF_UUID_STRLEN + 1];
    const of_contract_data *d = s->it->user;
    int rc;
    if (d->u.order_status_update.has_reason)
        snprintf(s->reason, sizeof s->reason, "%s", d->u.order_status_update.reason);
    rc = release_stock(s);
    if (rc != OF_OK || s->t->from != OF_ORDER_PAID)
        return rc;
    if (of_uuid_v7(id) != 0)
        return OF_ENOMEM;
    const char *v[2] = {s->e->id, id};
    return of_db_pipeline_add(s->wp, "os_cancel_refund", 2, v);
}

static int payment_timeout(of_step_ctx *s)
{
    snprintf(s->reason, sizeof s->reason, "%s", OF_REASON_PAYMENT_TIMEOUT);
    return release_stock(s);
}

/* Every step but CreateOrder (order-created's). */
static const of_step_impl steps[OF_ORDER_STEP_COUNT] = {
    [OF_ORDER_STEP_UPDATE_INVENTORY] = {true, update_inventory},
    [OF_ORDER_STEP_ORDER_COMPLETED] = {true, order_completed},
    [OF_ORDER_STEP_RECORD_PAYMENT] = {true, record_payment},
    [OF_ORDER_STEP_RECORD_SHIPMENT] = {true, NULL},
    [OF_ORDER_STEP_RECORD_DELIVERY] = {true, NULL}, /* delivered_at: by the machine */
    [OF_ORDER_STEP_CANCEL_ORDER] = {true, cancel_order},
    [OF_ORDER_STEP_PAYMENT_TIMEOUT] = {true, payment_timeout},
    [OF_ORDER_STEP_APPLY_RETURN] = {true, NULL},
};

static int decode(void *ctx, of_worker_item *it, of_event_error *err)
{
    return of_contract_item_decode(OF_TOPIC_ORDER_STATUS, it, err);
}

/* A deadline that no longer applies is recorded as ignored, with this reason. */
static void explain_deadline(const char *status, char *buf, size_t size)
{
    snprintf(buf, size, "payment deadline passed while the order was %s", status);
}

/* Changed events drive the automatic steps; updates and deadlines are triggers. */
static int route(void *ctx, const of_worker_item *it, of_route *r)
{
    const of_contract_data *d = it->user;
    if (strcmp(d->type, OF_TYPE_ORDER_STATUS_CHANGED) == 0) {
        r->kind = OF_ROUTE_ADVANCE;
        r->entity_id = d->u.order_status_changed.order_id;
        r->state = (int)d->u.order_status_changed.status;
        r->version = d->u.order_status_changed.version;
    } else if (strcmp(d->type, OF_TYPE_ORDER_DEADLINE_EXPIRED) == 0) {
        r->kind = OF_ROUTE_TRIGGER;
        r->entity_id = d->u.deadline_expired.order_id;
        r->trigger = OF_ORDER_T_PAYMENT_TIMEOUT;
        r->ignore_illegal = true;
        r->explain = explain_deadline;
    } else {
        const of_order_status_update *u = &d->u.order_status_update;
        r->kind = OF_ROUTE_TRIGGER;
        r->entity_id = u->order_id;
        r->trigger = of_order_update_trigger(u->status);
        r->has_expected_version = u->has_expected_version;
        r->expected_version = u->expected_version;
        if (r->trigger < 0)
            return OF_EINVAL;
    }
    return OF_OK;
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

/* After the orders (locked by the machine's load): their items, and the
 * products whose stock may move (locked, by id). */
static int load(void *ctx, of_worker_batch *b, of_db_pipeline *p)
{
    size_t n = b->hi - b->lo, n_all = 0, n_stock = 0;
    const char **all = calloc(n + 1, sizeof *all);
    const char **st = calloc(n + 1, sizeof *st);
    int rc = OF_ENOMEM;
    if (all == NULL || st == NULL)
        goto out;
    for (size_t i = b->lo; i < b->hi; i++) {
        const of_worker_item *it = &b->items[i];
        if (it->state != OF_ITEM_PENDING)
            continue;
        all[n_all++] = it->route.entity_id;
        if (moves_stock(it->user))
            st[n_stock++] = it->route.entity_id;
    }
    rc = of_db_pipeline_add_list(p, "os_items", all, n_all, NULL);
    if (rc == OF_OK)
        rc = of_db_pipeline_add_list(p, "os_products", st, n_stock, NULL);
out:
    free(all);
    free(st);
    return rc;
}

static int prepare(void *ctx, of_worker_batch *b, const of_db_pipeline *lp, void **out)
{
    const PGresult *rp = of_db_pipeline_result(lp, b->first_load + 1);
    int np = rp ? PQntuples(rp) : 0;
    memset(&state, 0, sizeof state);
    state.items = of_db_pipeline_result(lp, b->first_load);
    state.deadline_ms = cfg.payment_deadline;
    state.stocks = calloc((size_t)np + 1, sizeof *state.stocks);
    if (state.stocks == NULL)
        return OF_ENOMEM;
    for (int i = 0; i < np; i++) {
        state.stocks[i].id = PQgetvalue(rp, i, 0);
        state.stocks[i].stock = strtoll(PQgetvalue(rp, i, 1), NULL, 10);
    }
    state.n_stocks = (size_t)np;
    *out = &state;
    return OF_OK;
}

static void release(void *ctx, void *st)
{
    batch_state *bs = st;
    if (bs != NULL) {
        free(bs->stocks);
        bs->stocks = NULL;
    }
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
        return OF_ENOMEM;
    if (of_worker_prune_add(w, &of_prune_deadlines, cfg.deadline_keep) != 0)
        return OF_EINVAL;
    return deadline_scanner_start(&scanner, w, (uint64_t)cfg.deadline_scan);
}

static void stop(void *ctx, of_worker *w)
{
    deadline_scanner_stop(&scanner);
}

int main(int argc, char **argv)
{
    static const of_worker_handler h = {
        .name = "order-status",
        .topics = topics,
        .n_topics = sizeof topics / sizeof topics[0],
        .stmts = stmts,
        .n_stmts = sizeof stmts / sizeof stmts[0],
        .sets = sets,
        .n_sets = SET_COUNT,
        .machine = &of_order_machine,
        .steps = steps,
        .decode = decode,
        .route = route,
        .load = load,
        .prepare = prepare,
        .release = release,
        .item_free = of_contract_item_free,
        .start = start,
        .stop = stop,
    };
    of_config_load_or_exit(items, sizeof items / sizeof items[0], &cfg, argc, argv, NULL,
                           "orderflow-order-status",
                           "Consumes order.status and advances orders (see README.md).");
    return of_worker_run(&h, &cfg.w);
}
