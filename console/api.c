/* api.c: the console's routes: the embedded page and its JSON API.
 *
 *   GET  /, /static/<file>           the page (console/static/, embedded at build time)
 *   GET  /api/config                 {"writable": bool}: whether a token is set
 *   GET  /api/machines/{execution}   the machine of OrderProcess, OrderUpdate or ReturnRefund:
 *                                    states and rows of the table the workers run
 *   GET  /api/executions             ?machine= &status= &q= (order id, correlation id or return
 *                                    id) &since= &until= (RFC 3339) &page= &size=: rows, total
 *                                    and counts per status for the same filters
 *   GET  /api/executions/{id}        the execution, its history, the order's other executions
 *   GET  /api/dlq                    ?where=P &limit=N: orderctl dlq list --json
 *   GET  /api/dlq/history            orderctl dlq history --json
 *   GET  /api/dlq/{id}               orderctl dlq show ID --json
 *   POST /api/dlq/redrive            {"ids": [..]} or {"where": P, "limit": N}, "dry_run": bool:
 *                                    orderctl dlq redrive ... --json (dry run: no token needed)
 *   GET  /api/parked                 orderctl parked list --json
 *   GET  /api/parked/{key}           orderctl parked show KEY --json
 *   POST /api/parked/release         {"keys": [..], "final": bool}: orderctl parked release
 *   GET  /api/figures                the sampled figures (figures.c)
 *
 * Writes need "Authorization: Bearer <token>" when a token is set, and are
 * refused (403) when none is. Every answer carries a Content-Security-Policy
 * that allows only the console's own script and style, so nothing a record
 * carries can run in the page even if it were rendered as markup (the page
 * renders every value as text). */
#include "console.h"

#include "domain/order_machine.h"
#include "domain/return_machine.h"
#include "orderflow/log.h"
#include "orderflow/uuid.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* assets.c (generated from console/static/ by embed.cmake). */
typedef struct con_asset {
    const char *path;
    const char *type;
    const unsigned char *data;
    size_t len;
} con_asset;
extern const con_asset con_assets[];
extern const size_t con_n_assets;

static const char *const security_headers[] = {
    "Content-Security-Policy",
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options",
    "nosniff",
    "Referrer-Policy",
    "no-referrer",
    NULL,
};

static void answer(console *c, of_http_request *req, int status, const char *type, const char *body,
                   size_t len)
{
    of_http_answer(req, status, type, body, len, security_headers);
    (void)c;
}

static void answer_json(console *c, of_http_request *req, int status, cJSON *j)
{
    char *text = j != NULL ? cJSON_PrintUnformatted(j) : NULL;
    if (text == NULL)
        answer(c, req, 500, "application/json", "{\"error\":\"out of memory\"}", 25);
    else
        answer(c, req, status, "application/json", text, strlen(text));
    free(text);
    cJSON_Delete(j);
}

static void answer_error(console *c, of_http_request *req, int status, const char *why)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "error", why);
    answer_json(c, req, status, o);
}

/* --- reads from PostgreSQL --------------------------------------------------- */

typedef struct query {
    console *c;
    of_http_request *req;
    of_db_pipeline p;
    int kind; /* Q_LIST or Q_ONE */
} query;

enum { Q_LIST, Q_ONE };

/* clang-format off */
#define EXEC_COLS                                                                                  \
    "x.id, x.machine, x.status, x.current_state, x.order_id, x.return_id, "                        \
    OF_DB_TS("x.started_at") " as started_at, " OF_DB_TS("x.stopped_at") " as stopped_at, "        \
    "o.correlation_id, o.status as order_status"
/* $1 machine, $2 status, $3 order (id text; resolved below), $4 since, $5 until. */
#define EXEC_FILTER(status)                                                                        \
    " where ($1::text is null or x.machine = $1)"                                                  \
    " and (" status ")"                                                                            \
    " and ($3::uuid is null or x.order_id = $3::uuid)"                                             \
    " and ($4::timestamptz is null or x.started_at >= $4::timestamptz)"                            \
    " and ($5::timestamptz is null or x.started_at < $5::timestamptz)"
static const char sql_list[] =
    "select " EXEC_COLS " from executions x left join orders o on o.id = x.order_id"
    EXEC_FILTER("$2::text is null or x.status = $2")
    " order by x.started_at desc, x.id desc limit $6::integer offset $7::integer";
static const char sql_counts[] =
    "select x.status, count(*) as n from executions x"
    EXEC_FILTER("$2::text is null or true") " group by x.status order by x.status";
/* The order a search names: an order id, a return id, or a correlation id. */
static const char sql_resolve_uuid[] =
    "select coalesce((select id from orders where id = $1::uuid),"
    " (select order_id from returns where id = $1::uuid),"
    " (select id from orders where source_event_id = $1::text),"
    " (select order_id from returns where source_event_id = $1::text))";
static const char sql_resolve_text[] =
    "select coalesce((select id from orders where source_event_id = $1),"
    " (select order_id from returns where source_event_id = $1))";
/* The execution's trace is its first step's; every history row is a span
 * (migration 0018: the ids as the hex of a traceparent). */
static const char sql_one[] =
    "select " EXEC_COLS ", x.input, x.output, x.error,"
    " (select of_trace_hex(h.trace_id) from execution_history h where h.execution_id = x.id"
    " order by h.seq limit 1) as trace_id"
    " from executions x left join orders o on o.id = x.order_id where x.id = $1::uuid";
static const char sql_history[] =
    "select h.seq, " OF_DB_TS("h.at") " as at, h.step, h.from_state, h.to_state, h.outcome,"
    " h.event_id as ce_id, h.topic, h.partition, h.\"offset\", h.detail,"
    " of_trace_hex(h.trace_id) as trace_id, of_span_hex(h.span_id) as span_id,"
    " of_span_hex(h.parent_span_id) as parent_span_id"
    " from execution_history h where h.execution_id = $1::uuid order by h.seq";
static const char sql_siblings[] =
    "select x.id, x.machine, x.status, x.current_state, x.return_id,"
    " " OF_DB_TS("x.started_at") " as started_at from executions x"
    " where x.order_id = (select order_id from executions where id = $1::uuid)"
    " order by x.started_at, x.id";
/* clang-format on */

static void query_free(query *q)
{
    q->c->in_progress--;
    of_db_pipeline_free(&q->p);
    free(q);
}

static void on_queried(of_db *db, of_db_pipeline *p, int status, void *arg)
{
    query *q = arg;
    console *c = q->c;
    (void)db;
    if (status != OF_OK) {
        /* A bad filter (a time that is no time) is the client's; the rest ours. */
        bool client = p->status == OF_ESQL && strncmp(p->sqlstate, "22", 2) == 0;
        of_log_warn("console: query failed: %s", p->error);
        answer_error(c, q->req, client ? 400 : 503,
                     client ? "invalid filter value" : "the database is not available");
        query_free(q);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    if (q->kind == Q_LIST) {
        cJSON *counts = cJSON_AddObjectToObject(o, "counts");
        const PGresult *cr = of_db_pipeline_result(p, 1);
        double total = 0;
        cJSON_AddItemToObject(o, "rows", of_db_rows_json(of_db_pipeline_result(p, 0)));
        for (int i = 0; cr != NULL && i < PQntuples(cr); i++) {
            double n = strtod(PQgetvalue(cr, i, 1), NULL);
            cJSON_AddNumberToObject(counts, PQgetvalue(cr, i, 0), n);
            total += n;
        }
        cJSON_AddNumberToObject(o, "total", total);
    } else {
        const PGresult *one = of_db_pipeline_result(p, 0);
        if (one == NULL || PQntuples(one) == 0) {
            cJSON_Delete(o);
            answer_error(c, q->req, 404, "no such execution");
            query_free(q);
            return;
        }
        cJSON_AddItemToObject(o, "execution", of_db_row_json(one, 0));
        cJSON_AddItemToObject(o, "history", of_db_rows_json(of_db_pipeline_result(p, 1)));
        cJSON_AddItemToObject(o, "executions", of_db_rows_json(of_db_pipeline_result(p, 2)));
    }
    answer_json(c, q->req, 200, o);
    query_free(q);
}

static query *query_new(console *c, of_http_request *req, int kind)
{
    query *q = calloc(1, sizeof *q);
    if (q == NULL) {
        answer_error(c, req, 500, "out of memory");
        return NULL;
    }
    q->c = c;
    q->req = req;
    q->kind = kind;
    of_db_pipeline_init(&q->p);
    c->in_progress++;
    return q;
}

static void submit(query *q)
{
    if (!of_db_ready(&q->c->db) || of_db_submit(&q->c->db, &q->p, on_queried, q) != OF_OK) {
        answer_error(q->c, q->req, 503, "the database is not available");
        query_free(q);
    }
}

/* An empty or missing query parameter is NULL (no filter). */
static const char *param(of_http_request *req, const char *name)
{
    const char *v = of_http_req_query(req, name);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

static bool is_id(const char *s, size_t max)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++)
        if (!isalnum((unsigned char)s[n]) && strchr("._:-", s[n]) == NULL)
            return false;
    return n > 0 && n <= max;
}

/* The list, after the search (q) was resolved to an order id (NULL: none). */
static void list_executions(query *q, const char *order_id)
{
    of_http_request *req = q->req;
    char limit[16], offset[24];
    long size = param(req, "size") ? strtol(param(req, "size"), NULL, 10) : 25;
    long page = param(req, "page") ? strtol(param(req, "page"), NULL, 10) : 0;
    size = size < 1 ? 1 : size > 200 ? 200 : size;
    page = page < 0 ? 0 : page > 100000 ? 100000 : page;
    snprintf(limit, sizeof limit, "%ld", size);
    snprintf(offset, sizeof offset, "%ld", page * size);
    const char *v[7] = {param(req, "machine"),
                        param(req, "status"),
                        order_id,
                        param(req, "since"),
                        param(req, "until"),
                        limit,
                        offset};
    of_db_pipeline_reset(&q->p);
    if (of_db_pipeline_add_sql(&q->p, sql_list, 7, v) != OF_OK ||
        of_db_pipeline_add_sql(&q->p, sql_counts, 5, v) != OF_OK) {
        answer_error(q->c, req, 500, "out of memory");
        query_free(q);
        return;
    }
    submit(q);
}

static void on_resolved(of_db *db, of_db_pipeline *p, int status, void *arg)
{
    query *q = arg;
    const PGresult *r = status == OF_OK ? of_db_pipeline_result(p, 0) : NULL;
    char id[64];
    (void)db;
    if (r == NULL || PQntuples(r) != 1 || PQgetisnull(r, 0, 0)) {
        /* Nothing by that name: an empty list, not an error. */
        cJSON *o = cJSON_CreateObject();
        cJSON_AddArrayToObject(o, "rows");
        cJSON_AddObjectToObject(o, "counts");
        cJSON_AddNumberToObject(o, "total", 0);
        answer_json(q->c, q->req, 200, o);
        query_free(q);
        return;
    }
    snprintf(id, sizeof id, "%s", PQgetvalue(r, 0, 0));
    list_executions(q, id);
}

static void get_executions(console *c, of_http_request *req)
{
    const char *search = param(req, "q");
    query *q = query_new(c, req, Q_LIST);
    if (q == NULL)
        return;
    if (search == NULL) {
        list_executions(q, NULL);
        return;
    }
    if (!is_id(search, 64)) {
        answer_error(c, req, 400, "q: an order id, a return id or a correlation id");
        query_free(q);
        return;
    }
    const char *v[1] = {search};
    if (of_db_pipeline_add_sql(&q->p, of_uuid_valid(search) ? sql_resolve_uuid : sql_resolve_text,
                               1, v) != OF_OK ||
        !of_db_ready(&c->db) || of_db_submit(&c->db, &q->p, on_resolved, q) != OF_OK) {
        answer_error(c, req, 503, "the database is not available");
        query_free(q);
    }
}

static void get_execution(console *c, of_http_request *req, const char *id)
{
    query *q;
    if (!of_uuid_valid(id)) {
        answer_error(c, req, 404, "no such execution");
        return;
    }
    if ((q = query_new(c, req, Q_ONE)) == NULL)
        return;
    const char *v[1] = {id};
    if (of_db_pipeline_add_sql(&q->p, sql_one, 1, v) != OF_OK ||
        of_db_pipeline_add_sql(&q->p, sql_history, 1, v) != OF_OK ||
        of_db_pipeline_add_sql(&q->p, sql_siblings, 1, v) != OF_OK) {
        answer_error(c, req, 500, "out of memory");
        query_free(q);
        return;
    }
    submit(q);
}

/* --- machines ------------------------------------------------------------------ */

static void get_machine(console *c, of_http_request *req, const char *name)
{
    const of_machine *m = strcmp(name, "ReturnRefund") == 0 ? &of_return_machine
                          : strcmp(name, "OrderProcess") == 0 || strcmp(name, "OrderUpdate") == 0
                              ? &of_order_machine
                              : NULL;
    if (m == NULL) {
        answer_error(c, req, 404, "no such machine");
        return;
    }
    cJSON *o = cJSON_CreateObject(), *states = cJSON_AddArrayToObject(o, "states"),
          *rows = cJSON_AddArrayToObject(o, "rows");
    cJSON_AddStringToObject(o, "machine", m->name);
    cJSON_AddStringToObject(o, "entity", m->entity);
    for (size_t i = 1; i < m->n_states; i++)
        cJSON_AddItemToArray(states, cJSON_CreateString(m->states[i]));
    for (size_t i = 0; i < m->n_rows; i++) {
        const of_transition *t = &m->rows[i];
        cJSON *r = cJSON_CreateObject();
        cJSON_AddItemToArray(rows, r);
        if (t->from == OF_STATE_NONE)
            cJSON_AddNullToObject(r, "from");
        else
            cJSON_AddStringToObject(r, "from", m->states[t->from]);
        cJSON_AddStringToObject(r, "to", m->states[t->to]);
        cJSON_AddStringToObject(r, "trigger", m->triggers[t->trigger]);
        cJSON_AddStringToObject(r, "step", m->steps[t->step]);
        cJSON_AddStringToObject(r, "execution", m->executions[t->execution]);
    }
    answer_json(c, req, 200, o);
}

/* --- orderctl ------------------------------------------------------------------- */

/* The bearer token check, in constant time over the token's length. */
static bool authorised(console *c, of_http_request *req)
{
    const char *h = of_http_req_header(req, "Authorization");
    const char *want = c->cfg.token;
    size_t n;
    unsigned diff = 0;
    if (want == NULL || want[0] == '\0' || h == NULL || strncmp(h, "Bearer ", 7) != 0)
        return false;
    h += 7;
    n = strlen(want);
    if (strlen(h) != n)
        return false;
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned)(h[i] ^ want[i]);
    return diff == 0;
}

static bool writable(console *c)
{
    return c->cfg.token != NULL && c->cfg.token[0] != '\0';
}

static bool digits(const char *s)
{
    if (*s == '\0' || strlen(s) > 18)
        return false;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s))
            return false;
    return true;
}

static cJSON *body_json(of_http_request *req)
{
    size_t len;
    const char *b = of_http_req_body(req, &len);
    return b != NULL ? cJSON_ParseWithLength(b, len) : NULL;
}

static void post_redrive(console *c, of_http_request *req)
{
    cJSON *b = body_json(req);
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(b, "ids");
    const cJSON *where = cJSON_GetObjectItemCaseSensitive(b, "where");
    const cJSON *limit = cJSON_GetObjectItemCaseSensitive(b, "limit");
    bool dry = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(b, "dry_run"));
    const char *argv[32] = {"orderctl", "dlq", "redrive", "--json"};
    char lim[16];
    size_t n = 4;

    if (!dry && !writable(c)) {
        answer_error(c, req, 403, "the console is read-only (no token is set)");
    } else if (!dry && !authorised(c, req)) {
        answer_error(c, req, 401, "a redrive needs the console's token");
    } else if (cJSON_IsArray(ids) && cJSON_GetArraySize(ids) > 0 && cJSON_GetArraySize(ids) <= 20) {
        const cJSON *id;
        cJSON_ArrayForEach(id, ids)
        {
            if (!cJSON_IsString(id) || !digits(id->valuestring)) {
                answer_error(c, req, 400, "ids: dead letter ids (digits)");
                cJSON_Delete(b);
                return;
            }
            argv[n++] = id->valuestring;
        }
        if (dry)
            argv[n++] = "--dry-run";
        argv[n] = NULL;
        con_run_orderctl(c, req, argv);
    } else if (cJSON_IsString(where) && where->valuestring[0] != '\0' &&
               strlen(where->valuestring) < 1024) {
        argv[n++] = "--where";
        argv[n++] = where->valuestring;
        if (cJSON_IsNumber(limit) && limit->valuedouble >= 1 && limit->valuedouble <= 100000) {
            snprintf(lim, sizeof lim, "%d", (int)limit->valuedouble);
            argv[n++] = "--limit";
            argv[n++] = lim;
        }
        if (dry)
            argv[n++] = "--dry-run";
        argv[n] = NULL;
        con_run_orderctl(c, req, argv);
    } else {
        answer_error(c, req, 400, "expected {\"ids\": [...]} or {\"where\": \"...\"}");
    }
    cJSON_Delete(b);
}

static void post_release(console *c, of_http_request *req)
{
    cJSON *b = body_json(req);
    const cJSON *keys = cJSON_GetObjectItemCaseSensitive(b, "keys"), *k;
    const char *argv[32] = {"orderctl", "parked", "release"};
    size_t n = 3;

    if (!writable(c)) {
        answer_error(c, req, 403, "the console is read-only (no token is set)");
    } else if (!authorised(c, req)) {
        answer_error(c, req, 401, "a release needs the console's token");
    } else if (!cJSON_IsArray(keys) || cJSON_GetArraySize(keys) < 1 ||
               cJSON_GetArraySize(keys) > 20) {
        answer_error(c, req, 400, "expected {\"keys\": [...]}");
    } else {
        cJSON_ArrayForEach(k, keys)
        {
            if (!cJSON_IsString(k) || !is_id(k->valuestring, 64)) {
                answer_error(c, req, 400, "keys: order ids or ce_ids");
                cJSON_Delete(b);
                return;
            }
            argv[n++] = k->valuestring;
        }
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(b, "final")))
            argv[n++] = "--final";
        argv[n] = NULL;
        con_run_orderctl(c, req, argv);
    }
    cJSON_Delete(b);
}

/* --- dispatch ------------------------------------------------------------------- */

static void get_asset(console *c, of_http_request *req, const char *path)
{
    if (strcmp(path, "/") == 0)
        path = "/index.html";
    for (size_t i = 0; i < con_n_assets; i++) {
        if (strcmp(con_assets[i].path, path + 1) == 0 ||
            (strncmp(path, "/static/", 8) == 0 && strcmp(con_assets[i].path, path + 8) == 0)) {
            answer(c, req, 200, con_assets[i].type, (const char *)con_assets[i].data,
                   con_assets[i].len);
            return;
        }
    }
    answer_error(c, req, 404, "not found");
}

void con_api(void *arg, of_http_request *req)
{
    console *c = arg;
    const char *method = of_http_req_method(req), *path = of_http_req_path(req);
    bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    bool post = strcmp(method, "POST") == 0;
    char *figures;

    if (get && strncmp(path, "/api/", 5) != 0) {
        get_asset(c, req, path);
    } else if (get && strcmp(path, "/api/config") == 0) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddBoolToObject(o, "writable", writable(c));
        answer_json(c, req, 200, o);
    } else if (get && strncmp(path, "/api/machines/", 14) == 0) {
        get_machine(c, req, path + 14);
    } else if (get && strcmp(path, "/api/executions") == 0) {
        get_executions(c, req);
    } else if (get && strncmp(path, "/api/executions/", 16) == 0) {
        get_execution(c, req, path + 16);
    } else if (get && strcmp(path, "/api/dlq") == 0) {
        const char *where = param(req, "where"), *limit = param(req, "limit");
        const char *argv[10] = {"orderctl", "dlq", "list", "--json"};
        size_t n = 4;
        if (where != NULL) {
            argv[n++] = "--where";
            argv[n++] = where;
        }
        if (limit != NULL && digits(limit)) {
            argv[n++] = "--limit";
            argv[n++] = limit;
        }
        argv[n] = NULL;
        con_run_orderctl(c, req, argv);
    } else if (get && strcmp(path, "/api/dlq/history") == 0) {
        con_run_orderctl(c, req,
                         (const char *const[]){"orderctl", "dlq", "history", "--json", NULL});
    } else if (get && strncmp(path, "/api/dlq/", 9) == 0 && digits(path + 9)) {
        con_run_orderctl(
            c, req, (const char *const[]){"orderctl", "dlq", "show", path + 9, "--json", NULL});
    } else if (post && strcmp(path, "/api/dlq/redrive") == 0) {
        post_redrive(c, req);
    } else if (get && strcmp(path, "/api/parked") == 0) {
        con_run_orderctl(c, req,
                         (const char *const[]){"orderctl", "parked", "list", "--json", NULL});
    } else if (get && strncmp(path, "/api/parked/", 12) == 0 && is_id(path + 12, 64)) {
        con_run_orderctl(
            c, req, (const char *const[]){"orderctl", "parked", "show", path + 12, "--json", NULL});
    } else if (post && strcmp(path, "/api/parked/release") == 0) {
        post_release(c, req);
    } else if (get && strcmp(path, "/api/figures") == 0) {
        figures = con_figures_json(c);
        if (figures != NULL)
            answer(c, req, 200, "application/json", figures, strlen(figures));
        else
            answer_error(c, req, 500, "out of memory");
        free(figures);
    } else if (!get && !post) {
        answer_error(c, req, 405, "method not allowed");
    } else {
        answer_error(c, req, 404, "not found");
    }
}
