/* cmd_parked.c: orderctl parked list, show and release: the keys whose events wait (parked), and
 * releasing them.
 *
 * A worker parks a Kafka key when an event of it cannot take effect yet for
 * a cause that may clear: a customer or product the order names does not
 * exist yet (UNKNOWN_CUSTOMER, UNKNOWN_PRODUCT), an order.status.update
 * expects a version the order has not reached (VERSION_GAP). The event and
 * every later event of the key wait in parked_events, in arrival order,
 * while the partition moves on (migration 0016, common/src/park.c). The
 * worker replays a key with a backoff (1 s doubling up to park-retry-max);
 * once it has been parked for park-max-age its events take their outcome.
 *
 * release makes keys due now (the worker replays them within a second);
 * --final also makes that replay the last: what still cannot take effect
 * takes its outcome (an order REJECTED, an update rejected) instead of
 * parking again. release runs as the orderflow_orderctl role, which may
 * update only those columns of parked_keys. */
#include "orderctl.h"

#include <pwd.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

typedef struct parked_settings {
    orderctl_common c; /* database, Kafka (unused), topic prefix, log level */
    char *worker;      /* only this worker's keys */
    int all;           /* release: every parked key (of --worker) */
    int final;         /* release: the replay is the last */
    int64_t limit;     /* list: keys at most */
    int json;          /* print JSON */
} parked_settings;

static const of_config_item items[] = {
    ORDERCTL_COMMON_ITEMS(parked_settings, c),
    {"worker", NULL, "worker", OF_CFG_STRING, NULL,
     "only the keys of this worker (order-created, order-status, return-requested)",
     offsetof(parked_settings, worker), 0, -1},
    {"all", NULL, "all", OF_CFG_BOOL, "false", "release: every parked key (of --worker, if given)",
     offsetof(parked_settings, all), 0, -1},
    {"final", NULL, "final", OF_CFG_BOOL, "false",
     "release: the replay is the last; what still cannot take effect takes its outcome "
     "(rejected or dead-lettered) instead of parking again",
     offsetof(parked_settings, final), 0, -1},
    {"limit", NULL, "limit", OF_CFG_INT, "100", "list: most keys, oldest first",
     offsetof(parked_settings, limit), 1, 100000},
    {"json", NULL, "json", OF_CFG_BOOL, "false", "print JSON", offsetof(parked_settings, json), 0,
     -1},
};
#define N_ITEMS (sizeof items / sizeof items[0])

static const char summary[] =
    "       orderctl parked list [--worker W] [--limit N] [--json]\n"
    "       orderctl parked show KEY [--worker W] [--json]\n"
    "       orderctl parked release KEY... | --all [--worker W] [--final]\n"
    "list: the parked keys, oldest first: why the head event waits (error_code, reason), how\n"
    "many events wait behind it, the replays so far and when the next is due.\n"
    "show: one key (an order id; for order.created the event's ce_id) and its events in order.\n"
    "release: replays the keys now; --final makes it their last replay (exit 66 when a KEY is\n"
    "not parked).";

/* clang-format off */
#define KEY_COLS                                                                                   \
    "k.consumer as worker, k.topic, encode(k.key, 'escape') as key, k.error_code, k.reason,"       \
    " k.head_ce_id, (select count(*) from parked_events e where e.consumer = k.consumer"           \
    " and e.topic = k.topic and e.key = k.key) as events, " OF_DB_TS("k.parked_at")                \
    " as parked_at, k.attempts, " OF_DB_TS("k.next_try_at") " as next_try_at, "                    \
    OF_DB_TS("k.released_at") " as released_at, k.released_by, k.release_final"
static const char sql_list[] =
    "select " KEY_COLS " from parked_keys k where ($1::text is null or k.consumer = $1)"
    " order by k.parked_at limit $2::integer";
static const char sql_show_key[] =
    "select " KEY_COLS " from parked_keys k where k.key = convert_to($1, 'UTF8')"
    " and ($2::text is null or k.consumer = $2) order by k.consumer, k.topic";
static const char sql_show_events[] =
    "select e.id, e.consumer as worker, e.ce_id, e.ce_type, e.partition, e.\"offset\", "
    OF_DB_TS("e.parked_at") " as parked_at, convert_from(e.payload, 'UTF8') as payload"
    " from parked_events e where e.key = convert_to($1, 'UTF8')"
    " and ($2::text is null or e.consumer = $2) order by e.consumer, e.topic, e.id";
static const char sql_release[] =
    "update parked_keys k set next_try_at = now(), released_at = now(), released_by = $3,"
    " release_final = $4::boolean where ($1::text[] is null or k.key = any(select"
    " convert_to(x, 'UTF8') from unnest($1::text[]) x)) and ($2::text is null or k.consumer = $2)"
    " returning k.consumer, encode(k.key, 'escape')";
/* clang-format on */

static int parked_list(const parked_settings *s, PGconn *conn)
{
    char limit[24];
    PGresult *r = NULL;
    int code;
    snprintf(limit, sizeof limit, "%lld", (long long)s->limit);
    code = orderctl_db_query(conn, sql_list, 2, (const char *const[]){s->worker, limit}, &r);
    if (code != EX_OK)
        return code;
    if (s->json)
        code = orderctl_print_json(of_db_rows_json(r));
    else if (PQntuples(r) == 0)
        printf("no parked keys\n");
    else
        orderctl_print_table(stdout, r, "", 60);
    PQclear(r);
    return code;
}

static int parked_show(const parked_settings *s, PGconn *conn, const char *key)
{
    PGresult *k = NULL, *e = NULL;
    const char *vals[2] = {key, s->worker};
    int code = orderctl_db_query(conn, sql_show_key, 2, vals, &k);
    if (code == EX_OK)
        code = orderctl_db_query(conn, sql_show_events, 2, vals, &e);
    if (code == EX_OK && PQntuples(k) == 0 && PQntuples(e) == 0) {
        fprintf(stderr, "orderctl: key \"%s\" is not parked\n", key);
        code = EX_NOINPUT;
    } else if (code == EX_OK && s->json) {
        cJSON *o = cJSON_CreateObject();
        if (o != NULL) {
            cJSON_AddItemToObject(o, "keys", of_db_rows_json(k));
            cJSON_AddItemToObject(o, "events", of_db_rows_json(e));
        }
        code = orderctl_print_json(o);
    } else if (code == EX_OK) {
        printf("key %s\n", key);
        orderctl_print_table(stdout, k, "  ", 60);
        printf("events, in the order they are replayed:\n");
        orderctl_print_table(stdout, e, "  ", 80);
    }
    PQclear(k);
    PQclear(e);
    return code;
}

/* Who releases: the login user, for parked_keys.released_by. */
static const char *who(void)
{
    const struct passwd *pw = getpwuid(getuid());
    const char *user = getenv("USER");
    return user != NULL && user[0] != '\0' ? user : pw != NULL ? pw->pw_name : "unknown";
}

static int parked_release(const parked_settings *s, PGconn *conn, int n_keys, char **keys)
{
    PGresult *r = NULL;
    char *array = NULL;
    int code;
    if ((n_keys == 0) == !s->all) {
        fprintf(stderr, "orderctl: usage: orderctl parked release KEY... | --all [--worker W]\n");
        return EX_USAGE;
    }
    if (n_keys > 0 && (array = of_db_text_array((const char *const *)keys, (size_t)n_keys)) == NULL)
        return EX_SOFTWARE;
    const char *vals[4] = {array, s->worker, who(), s->final ? "true" : "false"};
    code = orderctl_db_query(conn, sql_release, 4, vals, &r);
    for (int i = 0; code == EX_OK && i < n_keys; i++) {
        bool found = false;
        for (int row = 0; row < PQntuples(r) && !found; row++)
            found = strcmp(PQgetvalue(r, row, 1), keys[i]) == 0;
        if (!found) {
            fprintf(stderr, "orderctl: key \"%s\" is not parked%s\n", keys[i],
                    s->worker != NULL ? " by that worker" : "");
            code = EX_NOINPUT;
        }
    }
    for (int row = 0; r != NULL && row < PQntuples(r); row++)
        printf("%s %s: released%s (replayed within a second)\n", PQgetvalue(r, row, 0),
               PQgetvalue(r, row, 1), s->final ? " for the last time" : "");
    if (r != NULL && PQntuples(r) == 0 && s->all)
        printf("no parked keys\n");
    free(array);
    PQclear(r);
    return code;
}

int orderctl_parked(int argc, char **argv)
{
    parked_settings s;
    PGconn *conn = NULL;
    int rest = 0, code = EX_OK;
    const char *action;

    memset(&s, 0, sizeof s);
    if (!orderctl_settings_load(items, N_ITEMS, &s, argc, argv, &rest, "orderctl parked", summary,
                                &code))
        return code;
    code = orderctl_common_apply(&s.c);
    if (code != EX_OK)
        goto out;
    action = rest >= 2 ? argv[1] : "";
    if (strcmp(action, "list") == 0 && rest == 2) {
        code = orderctl_db_connect(s.c.database_url, &conn);
        if (code == EX_OK)
            code = parked_list(&s, conn);
    } else if (strcmp(action, "show") == 0 && rest == 3) {
        code = orderctl_db_connect(s.c.database_url, &conn);
        if (code == EX_OK)
            code = parked_show(&s, conn, argv[2]);
    } else if (strcmp(action, "release") == 0) {
        code = orderctl_db_connect(s.c.database_url, &conn);
        if (code == EX_OK)
            code = parked_release(&s, conn, rest - 2, argv + 2);
    } else {
        fprintf(stderr, "orderctl: usage: orderctl parked list | show KEY | release KEY...; see "
                        "orderctl parked --help\n");
        code = EX_USAGE;
    }
out:
    PQfinish(conn);
    of_config_free(items, N_ITEMS, &s);
    return code;
}
