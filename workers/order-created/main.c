/* main.c: the order-created worker, which runs CreateOrder for every order.created event.
 *
 * It validates the event, snapshots the customer's existence and each
 * product's price, and creates the order (with its items, its OrderProcess
 * execution and the first history row) as CREATED, or as REJECTED with
 * UNKNOWN_CUSTOMER / UNKNOWN_PRODUCT. An order naming a product that does
 * not exist yet first waits, parked, for park-max-age (0: not at all) in
 * case the product appears. Either way it publishes
 * order.status.changed, which the order-status worker picks up to reserve
 * inventory. Events that cannot be decoded go to order.created.dlq. */
#include "domain/order_machine.h"

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
    of_worker_settings w; /* common worker settings */
} settings;

static const of_config_item items[] = {OF_WORKER_CONFIG(settings, w)};

static const char *const topics[] = {OF_TOPIC_ORDER_CREATED};

static const of_db_stmt stmts[] = {
    {"oc_customers", "select id from customers where id = any($1::text[])", false},
    {"oc_products", "select id, price_cents from products where id = any($1::text[])", false},
    /* An order.created that made an order is on record for good (unique
     * source_event_id): a duplicate even once its inbox row is pruned. */
    {"oc_applied", "select source_event_id from orders where source_event_id = any($1::text[])",
     false},
};

/* Row sets (one statement per batch each), in the order they run. */
enum { SET_ORDERS, SET_ITEMS, SET_COUNT };
static const of_worker_set sets[SET_COUNT] = {
    [SET_ORDERS] = {{"oc_insert_orders",
                     "insert into orders (id, customer_id, status, version, status_reason,"
                     " total_cents, currency, correlation_id, source_event_id, traceparent)"
                     " select t.id, t.customer_id, t.status, 1, nullif(t.reason, ''), t.total,"
                     " t.currency, t.correlation, t.source, t.traceparent from unnest($1::uuid[],"
                     " $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[],"
                     " $8::text[], $9::text[]) as t(id, customer_id, status, reason, total,"
                     " currency, correlation, source, traceparent)",
                     true},
                    9},
    [SET_ITEMS] = {{"oc_insert_items",
                    "insert into order_items (order_id, line, product_id, quantity,"
                    " unit_price_cents) select * from unnest($1::uuid[], $2::integer[],"
                    " $3::text[], $4::integer[], $5::bigint[])",
                    true},
                   5},
};

/* What the step needs from the load: the batch's known customers and prices. */
typedef struct lookups {
    const PGresult *customers; /* id */
    const PGresult *products;  /* id, price_cents */
} lookups;

static lookups batch_lookups;

static bool has_row(const PGresult *r, const char *id)
{
    for (int i = 0; r != NULL && i < PQntuples(r); i++)
        if (strcmp(PQgetvalue(r, i, 0), id) == 0)
            return true;
    return false;
}

/* Price of a product in cents, or -1 when unknown. */
static int64_t price_of(const PGresult *r, const char *id)
{
    for (int i = 0; r != NULL && i < PQntuples(r); i++)
        if (strcmp(PQgetvalue(r, i, 0), id) == 0)
            return strtoll(PQgetvalue(r, i, 1), NULL, 10);
    return -1;
}

/* CreateOrder: the order row, its item lines with the price snapshot, and the
 * decision CREATED or REJECTED (UNKNOWN_CUSTOMER before UNKNOWN_PRODUCT). */
static int create_order(of_step_ctx *s)
{
    const of_contract_data *d = s->it->user;
    const of_order_created *oc = &d->u.order_created;
    const lookups *lk = s->batch;
    int64_t prices[OF_ITEMS_MAX];
    char total_s[32], traceparent[OF_TRACEPARENT_SIZE];
    int64_t total = 0;
    bool unknown_product = false;
    int rc = OF_OK;

    for (size_t i = 0; i < oc->n_items; i++) {
        int64_t price = price_of(lk->products, oc->items[i].product_id);
        prices[i] = price;
        if (price < 0) {
            unknown_product = true;
            continue;
        }
        /* Prices come from the products table: their sum must still be an
         * amount the contract can carry. */
        int64_t line;
        if (__builtin_mul_overflow(price, (int64_t)oc->items[i].quantity, &line) ||
            __builtin_add_overflow(total, line, &total) || total > OF_CENTS_MAX)
            return OF_ERANGE;
    }
    if (!has_row(lk->customers, oc->customer_id)) {
        s->to = OF_ORDER_REJECTED;
        snprintf(s->reason, sizeof s->reason, "%s", OF_REASON_UNKNOWN_CUSTOMER);
    } else if (unknown_product) {
        s->to = OF_ORDER_REJECTED;
        snprintf(s->reason, sizeof s->reason, "%s", OF_REASON_UNKNOWN_PRODUCT);
    } else {
        s->to = OF_ORDER_CREATED;
    }
    snprintf(total_s, sizeof total_s, "%" PRId64, total);
    /* The order keeps its trace context: a later event without one goes on with it. */
    of_trace_format(&s->trace, traceparent);
    const char *ov[9] = {
        s->e->id,          oc->customer_id, of_order_status_name((of_order_status)s->to),
        s->reason,         total_s,         oc->currency,
        s->e->correlation, s->it->ev.id,    traceparent};
    rc = of_step_rows(s, SET_ORDERS, ov);
    for (size_t i = 0; rc == OF_OK && i < oc->n_items; i++) {
        char line[24], qty[16], price[24];
        snprintf(line, sizeof line, "%zu", i + 1);
        snprintf(qty, sizeof qty, "%" PRId32, oc->items[i].quantity);
        snprintf(price, sizeof price, "%" PRId64, prices[i]);
        const char *iv[5] = {s->e->id, line, oc->items[i].product_id, qty,
                             prices[i] < 0 ? NULL : price};
        rc = of_step_rows(s, SET_ITEMS, iv);
    }
    if (rc != OF_OK)
        return rc;
    /* The execution's input is the order as requested. */
    s->input = cJSON_Duplicate(s->it->ev.data, true);
    return s->input != NULL ? OF_OK : OF_ENOMEM;
}

/* A product the order names that is not there yet may be on its way (a
 * catalogue published after the order): the order waits, parked, and is
 * created when the product appears, or REJECTED as above once park-max-age
 * has passed (worker.h: park). An unknown customer is rejected at once: a
 * customer exists before it can order. */
static const char *park(void *ctx, void *state, const of_worker_item *it, char *reason, size_t size)
{
    const lookups *lk = state;
    const of_order_created *oc = &((const of_contract_data *)it->user)->u.order_created;
    if (!has_row(lk->customers, oc->customer_id))
        return NULL;
    for (size_t i = 0; i < oc->n_items; i++) {
        if (price_of(lk->products, oc->items[i].product_id) < 0) {
            snprintf(reason, size, "product \"%s\" does not exist (yet)", oc->items[i].product_id);
            return OF_REASON_UNKNOWN_PRODUCT;
        }
    }
    return NULL;
}

static const of_step_impl steps[OF_ORDER_STEP_COUNT] = {
    [OF_ORDER_STEP_CREATE_ORDER] = {true, create_order},
};

static int decode(void *ctx, of_worker_item *it, of_event_error *err)
{
    return of_contract_item_decode(OF_TOPIC_ORDER_CREATED, it, err);
}

/* Every order.created creates an order. */
static int route(void *ctx, const of_worker_item *it, of_route *r)
{
    r->kind = OF_ROUTE_CREATE;
    r->trigger = OF_ORDER_T_CREATED;
    return OF_OK;
}

/* One array of every customer and product the batch names, for two queries. */
static int load(void *ctx, of_worker_batch *b, of_db_pipeline *p)
{
    size_t n_c = 0, n_p = 0;
    const char **cust = calloc(b->hi - b->lo + 1, sizeof *cust);
    const char **prod = calloc((b->hi - b->lo) * OF_ITEMS_MAX + 1, sizeof *prod);
    int rc = OF_ENOMEM;
    if (cust == NULL || prod == NULL)
        goto out;
    for (size_t i = b->lo; i < b->hi; i++) {
        const of_contract_data *d = b->items[i].user;
        if (b->items[i].state != OF_ITEM_PENDING)
            continue;
        cust[n_c++] = d->u.order_created.customer_id;
        for (size_t k = 0; k < d->u.order_created.n_items; k++)
            prod[n_p++] = d->u.order_created.items[k].product_id;
    }
    rc = of_db_pipeline_add_list(p, "oc_customers", cust, n_c, NULL);
    if (rc == OF_OK)
        rc = of_db_pipeline_add_list(p, "oc_products", prod, n_p, NULL);
out:
    free(cust);
    free(prod);
    return rc;
}

static int prepare(void *ctx, of_worker_batch *b, const of_db_pipeline *lp, void **state)
{
    batch_lookups.customers = of_db_pipeline_result(lp, b->first_load);
    batch_lookups.products = of_db_pipeline_result(lp, b->first_load + 1);
    *state = &batch_lookups;
    return OF_OK;
}

int main(int argc, char **argv)
{
    settings cfg;
    static const of_worker_handler h = {
        .name = "order-created",
        .topics = topics,
        .n_topics = sizeof topics / sizeof topics[0],
        .stmts = stmts,
        .n_stmts = sizeof stmts / sizeof stmts[0],
        .applied_stmt = "oc_applied",
        .sets = sets,
        .n_sets = SET_COUNT,
        .machine = &of_order_machine,
        .steps = steps,
        .decode = decode,
        .route = route,
        .load = load,
        .prepare = prepare,
        .park = park,
        .item_free = of_contract_item_free,
    };
    of_config_load_or_exit(items, sizeof items / sizeof items[0], &cfg, argc, argv, NULL,
                           "orderflow-order-created",
                           "Consumes order.created and runs CreateOrder (see README.md).");
    return of_worker_run(&h, &cfg.w);
}
