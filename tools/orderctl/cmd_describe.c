/* cmd_describe.c: orderctl describe, history and executions, the read-only views an operator uses
 * in place of the Step Functions console.
 *
 * Everything here only reads PostgreSQL (blocking libpq, as befits a CLI):
 * the orders and their items, the order_overview and order_timeline views
 * (migration 0002), executions, returns and refunds. An ORDER argument is
 * the order id, its correlation id (the ce_id of the order.created event
 * that created it, what `orderctl submit` prints, so `orderctl describe
 * "$(orderctl submit ...)"` works), or one of its returns' ids or correlation
 * ids (the ce_id of the return.requested). Unknown orders exit EX_NOINPUT (66), malformed arguments
 * EX_DATAERR (65). */
#include "orderctl.h"

#include "domain/views.h"

#include "orderflow/event.h"
#include "orderflow/trace.h"
#include "orderflow/uuid.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>

/* Settings of describe, history and executions. */
typedef struct describe_settings {
    orderctl_common c; /* database (the only one used here), Kafka, prefix, log level */
    int json;          /* print JSON instead of text */
    char *machine;     /* executions: OrderProcess, OrderUpdate or ReturnRefund */
    char *status;      /* executions: RUNNING, SUCCEEDED, FAILED, TIMED_OUT or ABORTED */
    char *since;       /* executions: RFC 3339 time or a duration back from now */
    int64_t limit;     /* executions: rows at most */
    char *trace;       /* history: a trace id instead of an order */
} describe_settings;

#define JSON_ITEM(help)                                                                            \
    {                                                                                              \
        "json", NULL, "json", OF_CFG_BOOL, "false", help, offsetof(describe_settings, json), 0, -1 \
    }

static const of_config_item describe_items[] = {
    ORDERCTL_COMMON_ITEMS(describe_settings, c),
    JSON_ITEM("print one JSON object (order, items, executions, returns, refunds, deadlines)"),
};
static const of_config_item history_items[] = {
    ORDERCTL_COMMON_ITEMS(describe_settings, c),
    {"trace", NULL, "trace", OF_CFG_STRING, NULL,
     "a trace id (32 hex digits, as in a traceparent): every step on that trace, of any order, "
     "instead of one order's timeline",
     offsetof(describe_settings, trace), 0, -1},
    JSON_ITEM("print a JSON array of history rows"),
};
static const of_config_item executions_items[] = {
    ORDERCTL_COMMON_ITEMS(describe_settings, c),
    {"machine", NULL, "machine", OF_CFG_STRING, NULL, "OrderProcess, OrderUpdate or ReturnRefund",
     offsetof(describe_settings, machine), 0, -1},
    {"status", NULL, "status", OF_CFG_STRING, NULL,
     "RUNNING, SUCCEEDED, FAILED, TIMED_OUT or ABORTED", offsetof(describe_settings, status), 0,
     -1},
    {"since", NULL, "since", OF_CFG_STRING, NULL,
     "started at or after: RFC 3339 (2025-01-31T12:00:00Z) or a duration back (90s, 15m, 1h, 7d)",
     offsetof(describe_settings, since), 0, -1},
    {"limit", NULL, "limit", OF_CFG_INT, "50", "most rows, newest first",
     offsetof(describe_settings, limit), 1, 100000},
    JSON_ITEM("print a JSON array"),
};
#define N_DESCRIBE_ITEMS   (sizeof describe_items / sizeof describe_items[0])
#define N_HISTORY_ITEMS    (sizeof history_items / sizeof history_items[0])
#define N_EXECUTIONS_ITEMS (sizeof executions_items / sizeof executions_items[0])

/* Loads settings, applies the log level and checks the argument count; returns true to go on. */
static bool start(const of_config_item *items, size_t n, describe_settings *s, int argc,
                  char **argv, int *rest, const char *progname, const char *summary, int want_args,
                  const char *usage, int *code)
{
    memset(s, 0, sizeof *s);
    if (!orderctl_settings_load(items, n, s, argc, argv, rest, progname, summary, code))
        return false;
    *code = orderctl_common_apply(&s->c);
    if (*code == EX_OK && *rest != want_args + 1) {
        fprintf(stderr, "orderctl: usage: %s\n", usage);
        *code = EX_USAGE;
    }
    return *code == EX_OK;
}

/* Finds the order named by arg and writes its id: the order's id, or the
 * ce_id of its order.created (its correlation id, which every event of the
 * order carries), or one of its returns: the return's id or the ce_id of its
 * return.requested (the return's correlation id). Each is a unique index.
 * Returns EX_OK, EX_DATAERR, EX_NOINPUT or a query error. */
static int resolve_order(PGconn *conn, const char *arg, char id[OF_UUID_STRLEN + 1])
{
    PGresult *r = NULL;
    const char *vals[1] = {arg};
    int code;

    if (!of_uuid_valid(arg) && !of_event_id_valid(arg)) {
        fprintf(stderr,
                "orderctl: invalid order \"%s\": expected an order or return id (UUID) or a "
                "correlation id (the ce_id of an order.created or return.requested)\n",
                arg);
        return EX_DATAERR;
    }
    /* Ids first; a ce_id only when nothing has that id (both may be UUIDs). */
    code = orderctl_db_query(
        conn, of_uuid_valid(arg) ? of_view_resolve_uuid_sql : of_view_resolve_text_sql, 1, vals,
        &r);
    if (code != EX_OK)
        return code;
    if (PQntuples(r) == 0) {
        fprintf(stderr, "orderctl: order \"%s\" not found\n", arg);
        code = EX_NOINPUT;
    } else {
        snprintf(id, OF_UUID_STRLEN + 1, "%s", PQgetvalue(r, 0, 0));
    }
    PQclear(r);
    return code;
}

/* --- describe ----------------------------------------------------------------- */

static const char describe_summary[] =
    "       orderctl describe ORDER [--json]\n"
    "Shows one order: status, version, reason, customer, totals, timestamps, items with the\n"
    "price snapshot, executions, returns, refunds and deadlines. ORDER is the order id, its\n"
    "correlation id (the ce_id of its order.created, what orderctl submit prints), or the id or\n"
    "correlation id of one of its returns. Exit 66 if it is unknown.";

/* Returns: items as "product:qty" text for people (JSON: the view's array). */
static const char sql_returns_text[] =
    "select r.id, r.status, r.version, r.refund_cents, r.reason, r.status_reason,"
    " (select string_agg(product_id || ':' || quantity, ' ' order by product_id)"
    " from return_items where return_id = r.id) as items,"
    " " OF_DB_TS(
        "r.created_at") " as created_at"
                        " from returns r where r.order_id = $1::uuid order by r.created_at, r.id";
/* clang-format on */

/* The view's parts after the order row (views.h), in output order; text
 * output shows a return's items as text. */
static const char *part_sql(size_t i, bool json)
{
    return !json && strcmp(of_view_part_names[i], "returns") == 0 ? sql_returns_text
                                                                  : of_view_order_sql[i];
}

/* A column of the order row by name, "-" for NULL. */
static const char *col(const PGresult *r, const char *name)
{
    int c = PQfnumber(r, name);
    return c < 0 || PQgetisnull(r, 0, c) ? "-" : PQgetvalue(r, 0, c);
}

static void print_order_text(const PGresult *o)
{
    printf("order            %s\n", col(o, "order_id"));
    printf("status           %s (version %s)\n", col(o, "status"), col(o, "version"));
    printf("reason           %s\n", col(o, "reason"));
    printf("customer         %s\n", col(o, "customer_id"));
    printf("total            %s cents %s\n", col(o, "total_cents"), col(o, "currency"));
    printf("created          %s\n", col(o, "created_at"));
    printf("updated          %s\n", col(o, "updated_at"));
    printf("confirmed        %s\n", col(o, "confirmed_at"));
    printf("delivered        %s\n", col(o, "delivered_at"));
    printf("correlation id   %s (order.created ce_id %s)\n", col(o, "correlation_id"),
           col(o, "source_event_id"));
    printf("OrderProcess     %s, OrderUpdate %s, %s ms to confirm, %s rejected update(s)\n",
           col(o, "order_process"), col(o, "order_update"), col(o, "ms_to_confirm"),
           col(o, "rejected_updates"));
}

int orderctl_describe(int argc, char **argv)
{
    describe_settings s;
    PGconn *conn = NULL;
    cJSON *obj = NULL;
    char id[OF_UUID_STRLEN + 1];
    int rest = 0, code = EX_OK;

    if (!start(describe_items, N_DESCRIBE_ITEMS, &s, argc, argv, &rest, "orderctl describe",
               describe_summary, 1, "orderctl describe ORDER [--json]", &code))
        goto out;
    code = orderctl_db_connect(s.c.database_url, &conn);
    if (code == EX_OK)
        code = resolve_order(conn, argv[1], id);
    if (code != EX_OK)
        goto out;
    const char *vals[1] = {id};
    PGresult *parts[OF_VIEW_ORDER_PARTS] = {NULL};
    for (size_t i = 0; i < OF_VIEW_ORDER_PARTS && code == EX_OK; i++)
        code = orderctl_db_query(conn, part_sql(i, s.json), 1, vals, &parts[i]);
    if (code == EX_OK && PQntuples(parts[0]) == 0) { /* deleted since it was found */
        fprintf(stderr, "orderctl: order \"%s\" not found\n", id);
        code = EX_NOINPUT;
    }
    if (code == EX_OK && s.json) {
        int missing = 0;
        obj = of_view_order_json((const PGresult *const *)parts, &missing);
        code = orderctl_print_json(obj);
        obj = NULL;
    } else if (code == EX_OK) {
        print_order_text(parts[0]);
        for (size_t i = 1; i < OF_VIEW_ORDER_PARTS; i++) {
            printf("\n%s\n", of_view_part_names[i]);
            if (PQntuples(parts[i]) == 0)
                printf("  (none)\n");
            else
                orderctl_print_table(stdout, parts[i], "  ", 60);
        }
    }
    for (size_t i = 0; i < OF_VIEW_ORDER_PARTS; i++)
        PQclear(parts[i]);
out:
    cJSON_Delete(obj);
    PQfinish(conn);
    of_config_free(describe_items, N_DESCRIBE_ITEMS, &s);
    return code;
}

/* --- history -------------------------------------------------------------------- */

static const char history_summary[] =
    "       orderctl history ORDER [--json]\n"
    "       orderctl history --trace TRACE_ID [--json]\n"
    "Prints the order's timeline from the order_timeline view: every step and every rejected\n"
    "or ignored update of its OrderProcess, OrderUpdate and (for its returns) ReturnRefund\n"
    "executions, in time order, with the event that caused it (topic/partition@offset, ce_id),\n"
    "the step's span (trace id, span id, parent span id: W3C trace context, as in the\n"
    "ce_traceparent headers) and the detail (reason, ...). ORDER as for describe: an order or\n"
    "return id or correlation id. Returns show as ReturnRefund(<the last 12 digits of the\n"
    "return id>). With --trace, every step on that trace, of whichever orders, with the order\n"
    "id. Exit 66 if the order is unknown or no step is on the trace, 65 for a malformed id.";

/* Time order; rows of one transaction may share a timestamp (OrderCompleted
 * and the Start of OrderUpdate), so the execution that started first, then
 * seq, break the tie. */
/* clang-format off */
#define HISTORY_WHERE_ORDER                                                                        \
    " where t.order_id = $1::uuid order by t.at, (select e.started_at from executions e"           \
    " where e.order_id = t.order_id and e.machine = t.machine"                                     \
    " and e.return_id is not distinct from t.return_id), t.seq"

static const char sql_history_text[] =
    "select " OF_DB_TS("t.at") " as time,"
    " t.machine || coalesce('(' || right(t.return_id::text, 12) || ')', '') as machine, t.step,"
    " coalesce(t.from_state, '(none)') || ' -> '"
    " || coalesce(t.to_state, t.detail->>'trigger', '?') as transition, t.outcome,"
    " t.topic || '/' || coalesce(t.partition::text, '?') || '@'"
    " || coalesce(t.\"offset\"::text, '?') as caused_by,"
    " t.event_id as ce_id, t.trace_id, t.span_id, t.parent_span_id,"
    " nullif(t.detail::text, '{}') as detail"
    " from order_timeline t" HISTORY_WHERE_ORDER;

/* One trace across orders: the trace id is indexed (migration 0018). */
#define HISTORY_TRACE_FROM                                                                         \
    " from execution_history h join executions e on e.id = h.execution_id"                         \
    " where h.trace_id = $1::uuid order by h.at, e.started_at, h.seq"

static const char sql_trace_text[] =
    "select " OF_DB_TS("h.at") " as time, e.order_id,"
    " e.machine || coalesce('(' || right(e.return_id::text, 12) || ')', '') as machine, h.step,"
    " coalesce(h.from_state, '(none)') || ' -> '"
    " || coalesce(h.to_state, h.detail->>'trigger', '?') as transition, h.outcome,"
    " h.topic || '/' || coalesce(h.partition::text, '?') || '@'"
    " || coalesce(h.\"offset\"::text, '?') as caused_by,"
    " h.event_id as ce_id, of_span_hex(h.span_id) as span_id,"
    " of_span_hex(h.parent_span_id) as parent_span_id,"
    " nullif(h.detail::text, '{}') as detail" HISTORY_TRACE_FROM;

static const char sql_trace_json[] =
    "select " OF_DB_TS("h.at") " as at, e.order_id, e.machine, e.status as execution_status,"
    " e.return_id, h.seq, h.step, h.from_state, h.to_state, h.outcome, h.topic, h.partition,"
    " h.\"offset\", h.event_id as ce_id, h.detail, of_trace_hex(h.trace_id) as trace_id,"
    " of_span_hex(h.span_id) as span_id, of_span_hex(h.parent_span_id) as parent_span_id"
    HISTORY_TRACE_FROM;
/* clang-format on */

/* A trace id as given (32 hex digits, any case) into out, lowercased; false if malformed. */
static bool trace_arg(const char *arg, char out[OF_TRACE_ID_SIZE])
{
    if (strlen(arg) != OF_TRACE_ID_LEN)
        return false;
    for (size_t i = 0; i < OF_TRACE_ID_LEN; i++) {
        if (!isxdigit((unsigned char)arg[i]))
            return false;
        out[i] = (char)tolower((unsigned char)arg[i]);
    }
    out[OF_TRACE_ID_LEN] = '\0';
    return strspn(out, "0") != OF_TRACE_ID_LEN;
}

/* orderctl history --trace ID. */
static int history_of_trace(PGconn *conn, const describe_settings *s)
{
    char trace[OF_TRACE_ID_SIZE];
    PGresult *r = NULL;
    int code;
    if (!trace_arg(s->trace, trace)) {
        fprintf(stderr,
                "orderctl: invalid trace id \"%s\": expected 32 hex digits, not all zero (the "
                "second field of a traceparent)\n",
                s->trace);
        return EX_DATAERR;
    }
    const char *vals[1] = {trace};
    code = orderctl_db_query(conn, s->json ? sql_trace_json : sql_trace_text, 1, vals, &r);
    if (code == EX_OK && PQntuples(r) == 0) {
        fprintf(stderr, "orderctl: no step is on trace %s\n", trace);
        code = EX_NOINPUT;
    } else if (code == EX_OK && s->json) {
        code = orderctl_print_json(of_db_rows_json(r));
    } else if (code == EX_OK) {
        printf("trace %s\n", trace);
        orderctl_print_table(stdout, r, "", 80);
    }
    PQclear(r);
    return code;
}

int orderctl_history(int argc, char **argv)
{
    describe_settings s;
    PGconn *conn = NULL;
    PGresult *r = NULL;
    char id[OF_UUID_STRLEN + 1];
    int rest = 0, code = EX_OK;

    /* With --trace there is no ORDER (checked after the settings are read). */
    bool by_trace = false;
    for (int i = 1; i < argc && !by_trace; i++)
        by_trace = strcmp(argv[i], "--trace") == 0 || strncmp(argv[i], "--trace=", 8) == 0;
    if (!start(history_items, N_HISTORY_ITEMS, &s, argc, argv, &rest, "orderctl history",
               history_summary, by_trace ? 0 : 1,
               by_trace ? "orderctl history --trace TRACE_ID [--json]"
                        : "orderctl history ORDER [--json]",
               &code))
        goto out;
    code = orderctl_db_connect(s.c.database_url, &conn);
    if (code == EX_OK && s.trace != NULL) {
        code = history_of_trace(conn, &s);
        goto out;
    }
    if (code == EX_OK)
        code = resolve_order(conn, argv[1], id);
    if (code != EX_OK)
        goto out;
    const char *vals[1] = {id};
    code = orderctl_db_query(conn, s.json ? of_view_history_sql : sql_history_text, 1, vals, &r);
    if (code != EX_OK)
        goto out;
    if (s.json)
        code = orderctl_print_json(of_db_rows_json(r));
    else if (PQntuples(r) == 0)
        printf("order %s has no history yet\n", id);
    else
        orderctl_print_table(stdout, r, "", 80);
out:
    PQclear(r);
    PQfinish(conn);
    of_config_free(history_items, N_HISTORY_ITEMS, &s);
    return code;
}

/* --- executions ------------------------------------------------------------------- */

static const char executions_summary[] =
    "       orderctl executions [--machine M] [--status S] [--since T] [--limit N] [--json]\n"
    "Lists executions, newest first. M: OrderProcess, OrderUpdate, ReturnRefund; S: RUNNING,\n"
    "SUCCEEDED, FAILED, TIMED_OUT, ABORTED; T: an RFC 3339 time or a duration back from now\n"
    "(500ms, 90s, 15m, 1h, 7d, 2w). Exit 65 for a value outside those.";

static bool one_of(const char *v, const char *const *set)
{
    for (; *set != NULL; set++)
        if (strcmp(v, *set) == 0)
            return true;
    return false;
}

int orderctl_executions(int argc, char **argv)
{
    static const char *const machines[] = {"OrderProcess", "OrderUpdate", "ReturnRefund", NULL};
    static const char *const statuses[] = {"RUNNING",   "SUCCEEDED", "FAILED",
                                           "TIMED_OUT", "ABORTED",   NULL};
    /* clang-format off */
    static const char sql[] =
        "select id, machine, order_id, return_id, status, current_state,"
        " " OF_DB_TS("started_at") " as started_at,"
        " " OF_DB_TS("stopped_at") " as stopped_at, error"
        " from executions"
        " where ($1::text is null or machine = $1) and ($2::text is null or status = $2)"
        " and ($3::timestamptz is null or started_at >= $3::timestamptz)"
        " order by started_at desc, id desc limit $4::integer";
    /* clang-format on */
    describe_settings s;
    PGconn *conn = NULL;
    PGresult *r = NULL;
    char since[OF_EVENT_TIME_MAX + 1], limit[24];
    int rest = 0, code = EX_OK;

    if (!start(executions_items, N_EXECUTIONS_ITEMS, &s, argc, argv, &rest, "orderctl executions",
               executions_summary, 0,
               "orderctl executions [--machine M] [--status S] [--since T] [--limit N] [--json]",
               &code))
        goto out;
    if (s.machine != NULL && !one_of(s.machine, machines)) {
        fprintf(stderr,
                "orderctl: invalid machine \"%s\": use OrderProcess, OrderUpdate or "
                "ReturnRefund\n",
                s.machine);
        code = EX_DATAERR;
        goto out;
    }
    if (s.status != NULL && !one_of(s.status, statuses)) {
        fprintf(stderr,
                "orderctl: invalid status \"%s\": use RUNNING, SUCCEEDED, FAILED, TIMED_OUT or "
                "ABORTED\n",
                s.status);
        code = EX_DATAERR;
        goto out;
    }
    if (s.since != NULL && orderctl_time_arg(s.since, since) != 0) {
        fprintf(stderr,
                "orderctl: invalid since \"%s\": use an RFC 3339 time "
                "(2025-01-31T12:00:00Z) or a duration (90s, 15m, 1h, 7d)\n",
                s.since);
        code = EX_DATAERR;
        goto out;
    }
    snprintf(limit, sizeof limit, "%lld", (long long)s.limit);
    code = orderctl_db_connect(s.c.database_url, &conn);
    if (code != EX_OK)
        goto out;
    const char *vals[4] = {s.machine, s.status, s.since != NULL ? since : NULL, limit};
    code = orderctl_db_query(conn, sql, 4, vals, &r);
    if (code != EX_OK)
        goto out;
    if (s.json)
        code = orderctl_print_json(of_db_rows_json(r));
    else if (PQntuples(r) == 0)
        printf("no executions match\n");
    else
        orderctl_print_table(stdout, r, "", 60);
out:
    PQclear(r);
    PQfinish(conn);
    of_config_free(executions_items, N_EXECUTIONS_ITEMS, &s);
    return code;
}
