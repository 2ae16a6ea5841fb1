/* api.c: the gateway's routes.
 *
 *   POST /orders                  order.created       (key: its ce_id)
 *   POST /orders/{id}/status      order.status.update (key and order_id: the order id)
 *   POST /orders/{id}/returns     return.requested    (key and order_id: the order id)
 *   GET  /orders/{id}             the order view (domain/views.h), ?wait=STATUS&timeout=5s
 *   GET  /orders/{id}/history     the order's timeline
 *
 * A write is built and read back exactly as its worker will read it
 * (of_contract_build), so a body the worker would dead-letter is answered
 * 400 with the contract's reason code and nothing is published. The ce_id is
 * the Idempotency-Key header when given (a client's retry is then the same
 * event, applied once by the worker's inbox), else a new UUIDv7. A valid
 * traceparent (and tracestate) header becomes the event's ce_traceparent (and
 * ce_tracestate), so the workers' steps join the client's trace. 202 comes
 * after the broker acknowledged the record: the event is durable in Kafka.
 * Reads resolve {id} as orderctl does: an order id, or a correlation id
 * (the ce_id of an order.created or return.requested), or a return id. */
#include "gateway.h"

#include "domain/contract.h"
#include "domain/views.h"
#include "orderflow/event.h"
#include "orderflow/log.h"
#include "orderflow/trace.h"
#include "orderflow/uuid.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define POLL_MS         200   /* between two reads of a ?wait= */
#define WAIT_DEFAULT_MS 10000 /* ?wait= without ?timeout= */

typedef enum route {
    R_CREATE,  /* POST /orders */
    R_STATUS,  /* POST /orders/{id}/status */
    R_RETURN,  /* POST /orders/{id}/returns */
    R_VIEW,    /* GET /orders/{id} */
    R_HISTORY, /* GET /orders/{id}/history */
    R_NONE,
} route;

static const char *const route_labels[] = {
    "POST /orders",     "POST /orders/{id}/status", "POST /orders/{id}/returns",
    "GET /orders/{id}", "GET /orders/{id}/history", "other",
};

/* One API request in progress. */
typedef struct call {
    gateway *g;
    of_http_request *req;
    route r;
    char id[OF_EVENT_ID_MAX + 1];    /* {id} of the path */
    char ce_id[OF_EVENT_ID_MAX + 1]; /* the published event's */
    char topic[256];                 /* where it went */
    char order_id[OF_UUID_STRLEN + 1];
    char wait[32];     /* ?wait= status, or "" */
    uint64_t deadline; /* uv_now() limit of the wait */
    of_db_pipeline p;  /* the read's pipeline */
    bool resolved;     /* order_id is known */
    uv_timer_t timer;  /* the next read of a wait */
    bool timer_used;   /* timer initialised (closed before the free) */
} call;

static void on_call_closed(uv_handle_t *h)
{
    free(h->data);
}

static void call_free(call *c)
{
    of_db_pipeline_free(&c->p);
    c->g->in_progress--;
    if (c->timer_used)
        uv_close((uv_handle_t *)&c->timer, on_call_closed);
    else
        free(c);
}

/* Answers with a JSON body (taken over; NULL: out of memory) and frees c. */
static void answer_json(call *c, int status, cJSON *body, const char *const *headers)
{
    char *text = body != NULL ? cJSON_PrintUnformatted(body) : NULL;
    char buf[24];
    if (text == NULL) {
        status = 500;
        headers = NULL;
    }
    snprintf(buf, sizeof buf, "%d", status);
    of_metric_add(c->g->requests, (const char *const[]){route_labels[c->r], buf}, 1);
    if (text != NULL) {
        size_t len = strlen(text);
        (void)of_http_answer(c->req, status, "application/json", text, len, headers);
    } else {
        static const char oom[] = "{\"error\":\"INTERNAL\",\"reason\":\"out of memory\"}";
        (void)of_http_answer(c->req, 500, "application/json", oom, sizeof oom - 1, NULL);
    }
    cJSON_free(text);
    cJSON_Delete(body);
    call_free(c);
}

/* {"error": code, "reason": reason} */
static void answer_error(call *c, int status, const char *code, const char *reason,
                         const char *const *headers)
{
    cJSON *o = cJSON_CreateObject();
    if (o != NULL && (cJSON_AddStringToObject(o, "error", code) == NULL ||
                      cJSON_AddStringToObject(o, "reason", reason) == NULL)) {
        cJSON_Delete(o);
        o = NULL;
    }
    answer_json(c, status, o, headers);
}

/* --- routing ---------------------------------------------------------------- */

/* Splits path into a route and {id}; *known_path says whether the path
 * exists for some method (405, not 404). */
static route route_of(const char *method, const char *path, char id[OF_EVENT_ID_MAX + 1],
                      bool *known_path, const char **allow)
{
    const char *rest;
    size_t n;
    bool post = strcmp(method, "POST") == 0;
    bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;

    *known_path = false;
    id[0] = '\0';
    if (strcmp(path, "/orders") == 0) {
        *known_path = true;
        *allow = "POST";
        return post ? R_CREATE : R_NONE;
    }
    if (strncmp(path, "/orders/", 8) != 0)
        return R_NONE;
    rest = path + 8;
    n = strcspn(rest, "/");
    if (n == 0 || n > OF_EVENT_ID_MAX)
        return R_NONE;
    memcpy(id, rest, n);
    id[n] = '\0';
    rest += n;
    *known_path = true;
    if (*rest == '\0') {
        *allow = "GET, HEAD";
        return get ? R_VIEW : R_NONE;
    }
    if (strcmp(rest, "/history") == 0) {
        *allow = "GET, HEAD";
        return get ? R_HISTORY : R_NONE;
    }
    if (strcmp(rest, "/status") == 0) {
        *allow = "POST";
        return post ? R_STATUS : R_NONE;
    }
    if (strcmp(rest, "/returns") == 0) {
        *allow = "POST";
        return post ? R_RETURN : R_NONE;
    }
    *known_path = false;
    return R_NONE;
}

/* True when the write routes' bearer token is not required or matches (in
 * constant time). */
static bool authorised(const gateway *g, const of_http_request *req)
{
    const char *h = of_http_req_header(req, "Authorization");
    size_t want, got;
    unsigned char diff = 0;
    if (g->cfg.token == NULL || g->cfg.token[0] == '\0')
        return true;
    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
        return false;
    h += 7;
    want = strlen(g->cfg.token);
    got = strlen(h);
    for (size_t i = 0; i < want; i++)
        diff |= (unsigned char)(g->cfg.token[i] ^ (i < got ? h[i] : 0));
    return diff == 0 && got == want;
}

/* --- writes ------------------------------------------------------------------ */

static void on_published(call *c, int err)
{
    static const char *const retry[] = {"Retry-After", "1", NULL};
    char location[OF_EVENT_ID_MAX + 16];
    cJSON *o;
    if (err != 0) {
        of_log_warn("gateway: %s not delivered to %s: %s", c->ce_id, c->topic,
                    rd_kafka_err2str((rd_kafka_resp_err_t)err));
        answer_error(c, 503, "UNAVAILABLE",
                     "the event could not be delivered to Kafka; retry "
                     "with the same Idempotency-Key",
                     retry);
        return;
    }
    of_metric_add(c->g->published, (const char *const[]){c->topic}, 1);
    /* The order (or, for an update, the order it names) as the client can read it. */
    snprintf(location, sizeof location, "/orders/%s", c->r == R_STATUS ? c->id : c->ce_id);
    o = cJSON_CreateObject();
    if (o != NULL && (cJSON_AddStringToObject(o, "ce_id", c->ce_id) == NULL ||
                      cJSON_AddStringToObject(o, "correlation_id", c->ce_id) == NULL ||
                      cJSON_AddStringToObject(o, "topic", c->topic) == NULL ||
                      cJSON_AddStringToObject(o, "order_url", location) == NULL)) {
        cJSON_Delete(o);
        o = NULL;
    }
    const char *const headers[] = {"Location", location, NULL};
    answer_json(c, 202, o, headers);
}

void gw_on_delivery(of_producer *p, void *opaque, rd_kafka_resp_err_t err, void *arg);
void gw_on_delivery(of_producer *p, void *opaque, rd_kafka_resp_err_t err, void *arg)
{
    (void)p;
    (void)arg;
    on_published(opaque, (int)err);
}

/* The client's trace context, passed on as the event's (the gateway is a
 * pass-through participant of W3C Trace Context: it draws no span of its
 * own). An invalid traceparent is ignored, as a receiver must, and the first
 * worker starts a new trace; a tracestate travels only with a valid one. */
static int put_trace(of_http_request *req, of_message *m)
{
    const char *tp = of_http_req_header(req, "traceparent");
    const char *ts = of_http_req_header(req, "tracestate");
    of_trace t;
    if (tp == NULL || !of_trace_parse(tp, strlen(tp), &t))
        return 0;
    if (ts != NULL && !of_tracestate_valid(ts, strlen(ts)))
        ts = NULL;
    return of_trace_put(m, &t, ts);
}

static void write_event(call *c)
{
    static const struct {
        const char *topic; /* contract topic */
        const char *type;  /* ce_type */
    } kinds[] = {
        [R_CREATE] = {"order.created", "order.created"},
        [R_STATUS] = {"order.status", "order.status.update"},
        [R_RETURN] = {"return.requested", "return.requested"},
    };
    gateway *g = c->g;
    size_t len = 0;
    const char *body = of_http_req_body(c->req, &len);
    const char *key_hdr = of_http_req_header(c->req, "Idempotency-Key");
    of_event_error err = {0};
    of_message m = {0};
    cJSON *data;
    char reason[sizeof err.reason + 64];

    if (!authorised(g, c->req)) {
        static const char *const challenge[] = {"WWW-Authenticate", "Bearer", NULL};
        answer_error(c, 401, "UNAUTHORIZED", "a bearer token is required", challenge);
        return;
    }
    if (g->producer.fatal || g->stopping) {
        static const char *const retry[] = {"Retry-After", "1", NULL};
        answer_error(c, 503, "UNAVAILABLE", "not accepting events now", retry);
        return;
    }
    if (gw_overloaded(g)) {
        static const char *const retry[] = {"Retry-After", "5", NULL};
        answer_error(c, 503, "OVERLOADED",
                     "the pipeline behind the gateway is over its limits (events are not reaching "
                     "Kafka fast enough); retry later with the same Idempotency-Key",
                     retry);
        return;
    }
    if (c->r != R_CREATE && !of_uuid_valid(c->id)) {
        answer_error(c, 400, "INVALID_ID", "the order id in the path is not a UUID", NULL);
        return;
    }
    if (key_hdr != NULL) {
        if (!of_event_id_valid(key_hdr)) {
            answer_error(c, 400, "INVALID_ATTRIBUTE",
                         "Idempotency-Key must be 1 to 64 characters of [A-Za-z0-9._:-]", NULL);
            return;
        }
        snprintf(c->ce_id, sizeof c->ce_id, "%s", key_hdr);
    } else if (of_uuid_v7(c->ce_id) != 0) {
        answer_error(c, 500, "INTERNAL", "could not make a ce_id", NULL);
        return;
    }
    data = body != NULL ? cJSON_ParseWithLength(body, len) : NULL;
    if (data == NULL || !cJSON_IsObject(data)) {
        answer_error(c, 400, data == NULL ? "MALFORMED_JSON" : "DATA_NOT_OBJECT",
                     data == NULL ? "the body is not JSON" : "the body must be a JSON object",
                     NULL);
        cJSON_Delete(data);
        return;
    }
    if (c->r != R_CREATE) {
        /* The order named by the path; a body naming another is refused. */
        const cJSON *named = cJSON_GetObjectItemCaseSensitive(data, "order_id");
        if (named != NULL && (!cJSON_IsString(named) || strcasecmp(named->valuestring, c->id))) {
            answer_error(c, 400, "INVALID_ID", "order_id in the body is not the order of the path",
                         NULL);
            cJSON_Delete(data);
            return;
        }
        if (named == NULL && cJSON_AddStringToObject(data, "order_id", c->id) == NULL) {
            answer_error(c, 500, "INTERNAL", "out of memory", NULL);
            cJSON_Delete(data);
            return;
        }
    }
    snprintf(c->topic, sizeof c->topic, "%s%s", g->cfg.topic_prefix ? g->cfg.topic_prefix : "",
             kinds[c->r].topic);
    of_event_attrs attrs = {c->ce_id, kinds[c->r].type, "orderflow/gateway",
                            c->r == R_CREATE ? NULL : c->id, NULL};
    int rc = of_contract_build(&m, c->topic, kinds[c->r].topic, c->r == R_CREATE ? c->ce_id : c->id,
                               &attrs, data, &err);
    cJSON_Delete(data);
    if (rc != 0) {
        snprintf(reason, sizeof reason, "%s", err.reason);
        answer_error(c, err.code == OF_EVENT_ERR_NO_MEMORY ? 500 : 400,
                     of_event_code_name(err.code), reason, NULL);
        return;
    }
    rc = put_trace(c->req, &m);
    if (rc != 0) {
        of_message_free(&m);
        answer_error(c, 500, "INTERNAL", "out of memory", NULL);
        return;
    }
    rc = of_producer_send(&g->producer, &m, c);
    of_message_free(&m);
    if (rc != 0) {
        static const char *const retry[] = {"Retry-After", "1", NULL};
        answer_error(c, 503, "UNAVAILABLE", "the producer's queue is full; retry", retry);
    }
    /* else answered from the delivery report */
}

/* --- reads ------------------------------------------------------------------- */

static void read_step(call *c);

static void on_poll_timer(uv_timer_t *t)
{
    read_step(t->data);
}

/* Reads again after POLL_MS, or answers with what there is at the deadline. */
static bool wait_more(call *c)
{
    if (c->wait[0] == '\0' || uv_now(c->g->loop) + POLL_MS > c->deadline || c->g->stopping)
        return false;
    if (!c->timer_used) {
        uv_timer_init(c->g->loop, &c->timer);
        c->timer.data = c;
        c->timer_used = true;
    }
    uv_timer_start(&c->timer, on_poll_timer, POLL_MS, 0);
    return true;
}

static void on_read(of_db *db, of_db_pipeline *p, int status, void *arg)
{
    call *c = arg;
    static const char *const retry[] = {"Retry-After", "1", NULL};
    (void)db;
    if (status != 0) {
        of_log_warn("gateway: read of %s failed: %s", c->id, p->error[0] ? p->error : "?");
        answer_error(c, 503, "UNAVAILABLE", "the order could not be read now", retry);
        return;
    }
    if (!c->resolved) {
        const PGresult *r = of_db_pipeline_result(p, 0);
        if (r == NULL || PQntuples(r) == 0) {
            if (!wait_more(c))
                answer_error(c, 404, "NOT_FOUND", "no order has this id or correlation id", NULL);
            return;
        }
        snprintf(c->order_id, sizeof c->order_id, "%s", PQgetvalue(r, 0, 0));
        c->resolved = true;
        read_step(c);
        return;
    }
    if (c->r == R_HISTORY) {
        answer_json(c, 200, of_db_rows_json(of_db_pipeline_result(p, 0)), NULL);
        return;
    }
    const PGresult *parts[OF_VIEW_ORDER_PARTS];
    int missing = 0;
    for (size_t i = 0; i < OF_VIEW_ORDER_PARTS; i++)
        parts[i] = of_db_pipeline_result(p, i);
    cJSON *view = of_view_order_json(parts, &missing);
    if (missing) {
        answer_error(c, 404, "NOT_FOUND", "no order has this id or correlation id", NULL);
        return;
    }
    if (view != NULL && c->wait[0] != '\0') {
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(view, "status");
        bool reached = cJSON_IsString(st) && strcmp(st->valuestring, c->wait) == 0;
        if (!reached && wait_more(c)) {
            cJSON_Delete(view);
            return;
        }
        const char *const headers[] = {"Orderflow-Wait", reached ? "reached" : "timeout", NULL};
        answer_json(c, 200, view, headers);
        return;
    }
    answer_json(c, 200, view, NULL);
}

/* Resolves {id}, then reads the view or the timeline. */
static void read_step(call *c)
{
    static const char *const retry[] = {"Retry-After", "1", NULL};
    gateway *g = c->g;
    int rc = 0;
    if (!of_db_ready(&g->db)) {
        answer_error(c, 503, "UNAVAILABLE", "the database is not reachable now", retry);
        return;
    }
    of_db_pipeline_reset(&c->p);
    if (!c->resolved) {
        const char *vals[1] = {c->id};
        rc = of_db_pipeline_add_sql(
            &c->p, of_uuid_valid(c->id) ? of_view_resolve_uuid_sql : of_view_resolve_text_sql, 1,
            vals);
    } else if (c->r == R_HISTORY) {
        const char *vals[1] = {c->order_id};
        rc = of_db_pipeline_add_sql(&c->p, of_view_history_sql, 1, vals);
    } else {
        const char *vals[1] = {c->order_id};
        for (size_t i = 0; rc == 0 && i < OF_VIEW_ORDER_PARTS; i++)
            rc = of_db_pipeline_add_sql(&c->p, of_view_order_sql[i], 1, vals);
    }
    if (rc == 0)
        rc = of_db_submit(&g->db, &c->p, on_read, c);
    if (rc != 0)
        answer_error(c, 500, "INTERNAL", "could not query the database", NULL);
}

/* Milliseconds in "250ms", "5s", "1m" or a bare number of ms; -1 otherwise. */
static int64_t duration_ms(const char *s)
{
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (end == s || v < 0)
        return -1;
    if (*end == '\0' || strcmp(end, "ms") == 0)
        return v;
    if (strcmp(end, "s") == 0)
        return v * 1000;
    if (strcmp(end, "m") == 0)
        return v * 60000;
    return -1;
}

static void read_order(call *c)
{
    const char *wait = of_http_req_query(c->req, "wait");
    const char *timeout = of_http_req_query(c->req, "timeout");
    if (!of_event_id_valid(c->id)) {
        answer_error(c, 400, "INVALID_ID", "the id is not an order id, return id or correlation id",
                     NULL);
        return;
    }
    if (wait != NULL) {
        of_order_status st;
        int64_t ms = timeout != NULL ? duration_ms(timeout) : WAIT_DEFAULT_MS;
        if (c->r != R_VIEW || of_order_status_parse(wait, &st) != 0) {
            answer_error(c, 400, "INVALID_STATUS",
                         "wait= takes an order status (CONFIRMED, "
                         "PAID, ...) on GET /orders/{id}",
                         NULL);
            return;
        }
        if (ms < 0) {
            answer_error(c, 400, "OUT_OF_RANGE", "timeout= takes a duration (500ms, 5s, 1m)", NULL);
            return;
        }
        if (ms > c->g->cfg.wait_max)
            ms = c->g->cfg.wait_max;
        snprintf(c->wait, sizeof c->wait, "%s", wait);
        c->deadline = uv_now(c->g->loop) + (uint64_t)ms;
    }
    read_step(c);
}

/* --- entry ------------------------------------------------------------------- */

void gw_api(void *arg, of_http_request *req)
{
    gateway *g = arg;
    const char *allow = NULL;
    bool known = false;
    call *c = calloc(1, sizeof *c);
    if (c == NULL) {
        static const char oom[] = "{\"error\":\"INTERNAL\",\"reason\":\"out of memory\"}";
        (void)of_http_answer(req, 500, NULL, oom, sizeof oom - 1, NULL);
        return;
    }
    c->g = g;
    c->req = req;
    of_db_pipeline_init(&c->p);
    g->in_progress++;
    c->r = route_of(of_http_req_method(req), of_http_req_path(req), c->id, &known, &allow);
    switch (c->r) {
    case R_CREATE:
    case R_STATUS:
    case R_RETURN:
        write_event(c);
        return;
    case R_VIEW:
    case R_HISTORY:
        read_order(c);
        return;
    case R_NONE:
        break;
    }
    if (known) {
        const char *const headers[] = {"Allow", allow, NULL};
        answer_error(c, 405, "METHOD_NOT_ALLOWED", "this path does not take this method", headers);
    } else {
        answer_error(c, 404, "NOT_FOUND", "no such path (see docs/gateway.md)", NULL);
    }
}
