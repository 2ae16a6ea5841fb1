/* main.c: the order-created worker, which runs CreateOrder for every order.created event.
 *
 * It validates the event, snapshots the customer's existence and each
 * product's price, and creates the order (with its items, its OrderProcess
 * execution and the first history row) as CREATED, or as REJECTED with
 * UNKNOWN_CUSTOMER / UNKNOWN_PRODUCT. Either way it publishes
 * order.status.changed, which the order-status worker picks up to reserve
 * inventory. Events that cannot be decoded go to order.created.dlq. */
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
    of_worker_settings w; /* common worker settings */
} settings;

static const of_config_item items[] = {OF_WORKER_CONFIG(settings, w)};

static const char *const topics[] = {OF_TOPIC_ORDER_CREATED};

static const of_db_stmt stmts[] = {
    OF_ORDER_MACHINE_STMTS,
    {"oc_customers", "select id from customers where id = any($1::text[])"},
    {"oc_products", "select id, price_cents from products where id = any($1::text[])"},
    {"oc_insert_order",
     "insert into orders (id, customer_id, status, version, status_reason, total_cents, currency,"
     " correlation_id, source_event_id) values ($1::uuid, $2, $3, 1, nullif($4, ''), $5, $6, $7,"
     " $8)"},
    {"oc_insert_items",
     "insert into order_items (order_id, line, product_id, quantity, unit_price_cents)"
     " select $1::uuid, t.line, t.product_id, t.quantity, t.price"
     " from unnest($2::text[], $3::integer[], $4::bigint[]) with ordinality"
     " as t(product_id, quantity, price, line)"},
};

/* What the step needs from the load: the batch's known customers and prices. */
typedef struct lookups {
    const PGresult *customers; /* id */
    const PGresult *products;  /* id, price_cents */
} lookups;

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

/* Appends "s" to a Postgres array literal under construction. */
static int append(char **buf, size_t *len, size_t *cap, const char *s)
{
    size_t n = strlen(s);
    if (*len + n + 2 > *cap) {
        size_t c = (*cap + n + 2) * 2;
        char *b = realloc(*buf, c);
        if (b == NULL)
            return -1;
        *buf = b;
        *cap = c;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = '\0';
    return 0;
}

/* CreateOrder: the order row, its item lines with the price snapshot, and the
 * decision CREATED or REJECTED (UNKNOWN_CUSTOMER before UNKNOWN_PRODUCT). */
static int create_order(of_step_ctx *s)
{
    const of_contract_data *d = s->it->user;
    const of_order_created *oc = &d->u.order_created;
    const lookups *lk = s->user;
    char *pids = NULL, *qtys = NULL, *prices = NULL;
    size_t lp = 0, lq = 0, lpr = 0, cp = 0, cq = 0, cpr = 0;
    char num[32], total_s[32];
    int64_t total = 0;
    bool unknown_product = false;
    int rc = -1;

    for (size_t i = 0; i < oc->n_items; i++) {
        int64_t price = price_of(lk->products, oc->items[i].product_id);
        const char *sep = i == 0 ? "{" : ",";
        if (price < 0)
            unknown_product = true;
        else
            total += price * oc->items[i].quantity;
        snprintf(num, sizeof num, "%" PRId32, oc->items[i].quantity);
        /* Ids are quoted so that an id such as "NULL" stays a string. */
        if (append(&pids, &lp, &cp, sep) || append(&pids, &lp, &cp, "\"") ||
            append(&pids, &lp, &cp, oc->items[i].product_id) || append(&pids, &lp, &cp, "\"") ||
            append(&qtys, &lq, &cq, sep) || append(&qtys, &lq, &cq, num) ||
            append(&prices, &lpr, &cpr, sep))
            goto out;
        snprintf(num, sizeof num, "%" PRId64, price);
        if (append(&prices, &lpr, &cpr, price < 0 ? "NULL" : num))
            goto out;
    }
    if (append(&pids, &lp, &cp, "}") || append(&qtys, &lq, &cq, "}") ||
        append(&prices, &lpr, &cpr, "}"))
        goto out;

    if (!has_row(lk->customers, oc->customer_id)) {
        s->to = "REJECTED";
        snprintf(s->reason, sizeof s->reason, "%s", OF_REASON_UNKNOWN_CUSTOMER);
    } else if (unknown_product) {
        s->to = "REJECTED";
        snprintf(s->reason, sizeof s->reason, "%s", OF_REASON_UNKNOWN_PRODUCT);
    } else {
        s->to = "CREATED";
    }
    snprintf(total_s, sizeof total_s, "%" PRId64, total);
    const char *ov[8] = {s->entity_id, oc->customer_id,   s->to,       s->reason, total_s,
                         oc->currency, s->correlation_id, s->it->ev.id};
    const char *iv[4] = {s->entity_id, pids, qtys, prices};
    if (of_db_pipeline_add(s->wp, "oc_insert_order", 8, ov) != 0 ||
        of_db_pipeline_add(s->wp, "oc_insert_items", 4, iv) != 0)
        goto out;
    /* The execution's input is the order as requested. */
    s->input = cJSON_Duplicate(s->it->ev.data, true);
    if (s->input == NULL)
        goto out;
    rc = 0;
out:
    free(pids);
    free(qtys);
    free(prices);
    return rc;
}

static const of_step_impl steps[] = {
    {"CreateOrder", create_order},
    {NULL, NULL},
};

static int decode(void *ctx, of_worker_item *it, of_event_error *err)
{
    return of_contract_item_decode(OF_TOPIC_ORDER_CREATED, it, err);
}

/* One array of every customer and product the batch names, for two queries. */
static int load(void *ctx, of_worker_batch *b, of_db_pipeline *p)
{
    size_t n_c = 0, n_p = 0, cap_p = 0;
    const char **cust = calloc(b->hi - b->lo + 1, sizeof *cust);
    const char **prod = NULL;
    char *ca = NULL, *pa = NULL;
    int rc = -1;
    if (cust == NULL)
        return -1;
    for (size_t i = b->lo; i < b->hi; i++) {
        const of_contract_data *d = b->items[i].user;
        if (b->items[i].state != OF_ITEM_PENDING)
            continue;
        cust[n_c++] = d->u.order_created.customer_id;
        for (size_t k = 0; k < d->u.order_created.n_items; k++) {
            if (n_p == cap_p) {
                cap_p = cap_p ? cap_p * 2 : 256;
                const char **np = realloc(prod, cap_p * sizeof *np);
                if (np == NULL)
                    goto out;
                prod = np;
            }
            prod[n_p++] = d->u.order_created.items[k].product_id;
        }
    }
    ca = of_db_text_array(cust, n_c);
    pa = of_db_text_array(prod, n_p);
    if (ca == NULL || pa == NULL)
        goto out;
    const char *v1[1] = {ca};
    const char *v2[1] = {pa};
    if (of_db_pipeline_add(p, "oc_customers", 1, v1) != 0 ||
        of_db_pipeline_add(p, "oc_products", 1, v2) != 0)
        goto out;
    rc = 0;
out:
    free(cust);
    free(prod);
    free(ca);
    free(pa);
    return rc;
}

static int apply(void *ctx, of_worker_batch *b, const of_db_pipeline *lp, size_t first,
                 of_db_pipeline *wp)
{
    lookups lk = {of_db_pipeline_result(lp, first), of_db_pipeline_result(lp, first + 1)};
    for (size_t i = b->lo; i < b->hi; i++) {
        of_worker_item *it = &b->items[i];
        of_step_ctx s;
        int rc;
        if (it->state != OF_ITEM_PENDING)
            continue;
        memset(&s, 0, sizeof s);
        s.b = b;
        s.it = it;
        s.wp = wp;
        s.user = &lk;
        if (of_uuid_v7(s.entity_id) != 0)
            return -1;
        memcpy(s.order_id, s.entity_id, sizeof s.order_id);
        snprintf(s.correlation_id, sizeof s.correlation_id, "%s", it->ev.id);
        rc = of_machine_apply(&of_order_machine, steps, &s, OF_STATE_NONE, OF_TYPE_ORDER_CREATED);
        of_step_ctx_free(&s);
        if (rc != 0)
            return rc < 0 ? rc : -1;
        it->state = OF_ITEM_DONE;
        it->outcome = s.to;
    }
    return 0;
}

int main(int argc, char **argv)
{
    settings cfg;
    char err[256];
    static const of_worker_handler h = {
        "order-created",
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
    if (of_machine_validate(&of_order_machine, err, sizeof err) != 0) {
        fprintf(stderr, "order machine table is invalid: %s\n", err);
        return 70;
    }
    of_config_load_or_exit(items, sizeof items / sizeof items[0], &cfg, argc, argv, NULL,
                           "orderflow-order-created",
                           "Consumes order.created and runs CreateOrder (see README.md).");
    return of_worker_run(&h, &cfg.w);
}
