/* cmd_outbox.c: orderctl outbox list and retry: the outbox rows not published yet, and a second
 * chance for the ones the relay gave up.
 *
 * The relay gives a row up (outbox.dead_at, last_error) after
 * --outbox-max-failures permanent delivery errors: the broker refused the
 * record itself, typically a record larger than the topic's max.message.bytes
 * (migration 0010). A dead row is never sent again by the workers and holds
 * up no younger row of its key. After the cause is fixed (the topic's limit
 * raised, say), `outbox retry` makes such rows live again: held, failures 0,
 * no lease, so the workers' sweep sends them, in seq order behind any older
 * pending row of their key.
 *
 * Order. A dead row's younger rows of the same topic and key were published
 * meanwhile; retried, the dead row reaches the topic after them. retry refuses
 * such a row unless --force, and says so: a consumer that keeps the highest
 * version per order (order.status.changed carries `version`) drops it as
 * stale anyway; one that does not would see an older event last.
 *
 * retry changes the outbox, so it runs as the schema owner (like prune): the
 * orderflow_orderctl role reads it only. One transaction: nothing changes
 * unless every row named can be retried. */
#include "orderctl.h"

#include <ctype.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>

typedef struct outbox_settings {
    orderctl_common c; /* database, Kafka (unused), topic prefix, log level */
    char *topic;       /* list, retry --all: only this topic (prefix added) */
    int dead;          /* list: dead rows only */
    int all;           /* retry: every dead row (of --topic) */
    int force;         /* retry: also rows whose key has younger published rows */
    int64_t limit;     /* list: rows at most; retry --all: rows at most */
    int json;          /* print JSON */
} outbox_settings;

static const of_config_item items[] = {
    ORDERCTL_COMMON_ITEMS(outbox_settings, c),
    {"topic", NULL, "topic", OF_CFG_STRING, NULL,
     "topic, with or without the topic prefix (list filter; retry --all selector)",
     offsetof(outbox_settings, topic), 0, -1},
    {"dead", NULL, "dead", OF_CFG_BOOL, "false", "list: only the rows the relay gave up",
     offsetof(outbox_settings, dead), 0, -1},
    {"all", NULL, "all", OF_CFG_BOOL, "false", "retry: every dead row (of --topic, if given)",
     offsetof(outbox_settings, all), 0, -1},
    {"force", NULL, "force", OF_CFG_BOOL, "false",
     "retry: also a row whose key had younger rows published since (it arrives after them)",
     offsetof(outbox_settings, force), 0, -1},
    {"limit", NULL, "limit", OF_CFG_INT, "100", "list, retry --all: most rows, oldest first",
     offsetof(outbox_settings, limit), 1, 100000},
    {"json", NULL, "json", OF_CFG_BOOL, "false", "print JSON", offsetof(outbox_settings, json), 0,
     -1},
};
#define N_ITEMS (sizeof items / sizeof items[0])

static const char summary[] =
    "       orderctl outbox list [--dead] [--topic T] [--limit N] [--json]\n"
    "       orderctl outbox retry ID... | --all [--topic T] [--limit N] [--force]\n"
    "list: outbox rows not published yet, oldest first: pending ones (held: waiting behind an\n"
    "older row of their key or after a failed delivery) and dead ones (the relay gave them up\n"
    "after --outbox-max-failures permanent delivery errors; last_error says why).\n"
    "retry: makes dead rows live again once the cause is fixed; the workers' sweep sends them in\n"
    "seq order. A row whose key had younger rows published since would arrive after them: it is\n"
    "refused unless --force. All or nothing: exit 66 for an unknown ID, 65 for a row that is not\n"
    "dead or is refused. Runs as the schema owner.";

/* clang-format off */
/* A younger row of the same topic and key was published, or may be on its
 * way (pending and not held: sent directly, or leased by a sweep): the dead
 * row would come after it. Younger held rows are fine, the sweep sends them
 * behind it in seq order. Keyless rows have no order to keep. */
#define YOUNGER_OUT(o)                                                                             \
    "(" o ".key is not null and exists (select 1 from outbox y where y.topic = " o ".topic"        \
    " and y.key = " o ".key and y.seq > " o ".seq and (y.published_at is not null"                 \
    " or (y.dead_at is null and not y.held))))"

static const char sql_list[] =
    "select o.seq, o.id, o.topic, encode(o.key, 'escape') as key, " OF_DB_TS("o.created_at")
    " as created_at, o.held, o.attempts, o.failures, " OF_DB_TS("o.dead_at") " as dead_at,"
    " o.last_error from outbox o"
    " where o.published_at is null and (not $1::boolean or o.dead_at is not null)"
    " and ($2::text is null or o.topic = $2 or o.topic = $3)"
    " order by o.seq limit $4::integer";
/* The rows retry was asked for (by id, or every dead one of a topic). */
static const char sql_pick_ids[] =
    "select o.id, o.dead_at is not null as dead, " YOUNGER_OUT("o") " as younger"
    " from outbox o where o.id = any($1::uuid[]) for update";
static const char sql_pick_all[] =
    "select o.id, true as dead, " YOUNGER_OUT("o") " as younger from outbox o"
    " where o.published_at is null and o.dead_at is not null"
    " and ($1::text is null or o.topic = $1 or o.topic = $2)"
    " order by o.seq limit $3::integer for update";
static const char sql_retry[] =
    "update outbox set dead_at = null, failures = 0, held = true, claimed_until = null"
    " where id = any($1::uuid[]) and dead_at is not null";
/* clang-format on */

/* --- list ------------------------------------------------------------------ */

static int outbox_list(const outbox_settings *s, PGconn *conn, const char *prefixed)
{
    char limit[24];
    PGresult *r = NULL;
    int code;

    snprintf(limit, sizeof limit, "%lld", (long long)s->limit);
    const char *vals[4] = {s->dead ? "true" : "false", s->topic, prefixed, limit};
    code = orderctl_db_query(conn, sql_list, 4, vals, &r);
    if (code != EX_OK)
        return code;
    if (s->json)
        code = orderctl_print_json(of_db_rows_json(r));
    else if (PQntuples(r) == 0)
        printf(s->dead ? "no dead outbox rows\n" : "no unpublished outbox rows\n");
    else
        orderctl_print_table(stdout, r, "", 60);
    PQclear(r);
    return code;
}

/* --- retry ----------------------------------------------------------------- */

/* A UUID in its text form (8-4-4-4-12 hex digits). */
static bool is_uuid(const char *s)
{
    static const int dashes[] = {8, 13, 18, 23};
    size_t d = 0;
    if (strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        if (d < 4 && i == dashes[d]) {
            if (s[i] != '-')
                return false;
            d++;
        } else if (!isxdigit((unsigned char)s[i])) {
            return false;
        }
    }
    return true;
}

/* "{a,b,c}": ids as a Postgres array literal (heap; free()), or NULL. */
static char *uuid_array(char *const *ids, size_t n)
{
    size_t len = 3 + n * 37;
    char *out = malloc(len), *p = out;
    if (out == NULL)
        return NULL;
    *p++ = '{';
    for (size_t i = 0; i < n; i++)
        p += snprintf(p, len - (size_t)(p - out), "%s%s", i > 0 ? "," : "", ids[i]);
    snprintf(p, len - (size_t)(p - out), "}");
    return out;
}

/* Checks the picked rows against the ids asked for (NULL for --all). Returns
 * EX_OK when every row can be retried, else the code of the first problem
 * (reported). */
static int retry_check(const outbox_settings *s, const PGresult *r, char *const *ids, size_t n)
{
    int code = EX_OK;
    for (size_t i = 0; ids != NULL && i < n; i++) {
        bool found = false;
        for (int row = 0; row < PQntuples(r) && !found; row++)
            found = strcasecmp(PQgetvalue(r, row, 0), ids[i]) == 0;
        if (!found) {
            fprintf(stderr, "orderctl: outbox row %s not found\n", ids[i]);
            code = EX_NOINPUT;
        }
    }
    if (code != EX_OK)
        return code;
    for (int row = 0; row < PQntuples(r); row++) {
        const char *id = PQgetvalue(r, row, 0);
        if (strcmp(PQgetvalue(r, row, 1), "t") != 0) {
            fprintf(stderr, "orderctl: outbox row %s is not dead (pending or published)\n", id);
            code = EX_DATAERR;
        } else if (strcmp(PQgetvalue(r, row, 2), "t") == 0 && !s->force) {
            fprintf(stderr,
                    "orderctl: outbox row %s: younger rows of its key were published since (or "
                    "are on their way); retried, it would arrive after them (--force to send "
                    "it anyway)\n",
                    id);
            code = EX_DATAERR;
        }
    }
    return code;
}

static int outbox_retry(const outbox_settings *s, PGconn *conn, const char *prefixed, int n_ids,
                        char **ids)
{
    char limit[24], *array = NULL;
    PGresult *r = NULL, *u = NULL;
    int code;

    if ((n_ids == 0) == !s->all) {
        fprintf(stderr, "orderctl: usage: orderctl outbox retry ID... | --all [--topic T]\n");
        return EX_USAGE;
    }
    for (int i = 0; i < n_ids; i++) {
        if (!is_uuid(ids[i])) {
            fprintf(stderr, "orderctl: invalid outbox row id \"%s\": expected a UUID\n", ids[i]);
            return EX_DATAERR;
        }
    }
    code = orderctl_db_exec(conn, "begin");
    if (code != EX_OK)
        return code;
    if (s->all) {
        snprintf(limit, sizeof limit, "%lld", (long long)s->limit);
        const char *vals[3] = {s->topic, prefixed, limit};
        code = orderctl_db_query(conn, sql_pick_all, 3, vals, &r);
    } else {
        array = uuid_array(ids, (size_t)n_ids);
        const char *vals[1] = {array};
        code = array != NULL ? orderctl_db_query(conn, sql_pick_ids, 1, vals, &r) : EX_SOFTWARE;
    }
    if (code == EX_OK)
        code = retry_check(s, r, s->all ? NULL : ids, (size_t)n_ids);
    if (code == EX_OK && PQntuples(r) > 0) {
        char **picked = calloc((size_t)PQntuples(r), sizeof *picked);
        for (int row = 0; picked != NULL && row < PQntuples(r); row++)
            picked[row] = PQgetvalue(r, row, 0);
        free(array);
        array = picked != NULL ? uuid_array(picked, (size_t)PQntuples(r)) : NULL;
        free(picked);
        const char *vals[1] = {array};
        code = array != NULL ? orderctl_db_query(conn, sql_retry, 1, vals, &u) : EX_SOFTWARE;
    }
    if (code == EX_OK)
        code = orderctl_db_exec(conn, "commit");
    else if (orderctl_db_exec(conn, "rollback") != EX_OK)
        code = EX_UNAVAILABLE; /* the connection is gone: nothing was committed either */
    if (code == EX_OK) {
        for (int row = 0; row < PQntuples(r); row++)
            printf("%s: retried (held; the sweep sends it)\n", PQgetvalue(r, row, 0));
        if (PQntuples(r) == 0)
            printf("no dead outbox rows\n");
    }
    free(array);
    PQclear(u);
    PQclear(r);
    return code;
}

int orderctl_outbox(int argc, char **argv)
{
    outbox_settings s;
    PGconn *conn = NULL;
    int rest = 0, code = EX_OK;
    char prefixed[512];
    const char *action;

    memset(&s, 0, sizeof s);
    if (!orderctl_settings_load(items, N_ITEMS, &s, argc, argv, &rest, "orderctl outbox", summary,
                                &code))
        return code;
    code = orderctl_common_apply(&s.c);
    if (code != EX_OK)
        goto out;
    if (s.topic != NULL && orderctl_topic(prefixed, sizeof prefixed, s.c.prefix, s.topic)) {
        fprintf(stderr, "orderctl: invalid topic \"%s\": too long\n", s.topic);
        code = EX_DATAERR;
        goto out;
    }
    action = rest >= 2 ? argv[1] : "";
    if (strcmp(action, "list") == 0 && rest == 2) {
        code = orderctl_db_connect(s.c.database_url, &conn);
        if (code == EX_OK)
            code = outbox_list(&s, conn, s.topic != NULL ? prefixed : NULL);
    } else if (strcmp(action, "retry") == 0) {
        code = orderctl_db_connect(s.c.database_url, &conn);
        if (code == EX_OK)
            code = outbox_retry(&s, conn, s.topic != NULL ? prefixed : NULL, rest - 2, argv + 2);
    } else {
        fprintf(stderr, "orderctl: usage: orderctl outbox list | retry ID... | retry --all; see "
                        "orderctl outbox --help\n");
        code = EX_USAGE;
    }
out:
    PQfinish(conn);
    of_config_free(items, N_ITEMS, &s);
    return code;
}
