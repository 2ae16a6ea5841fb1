/* cmd_wait.c: --wait of orderctl submit, update and return: polls PostgreSQL until the workers have
 * processed the event, and reports the outcome. */
#include "cmd_submit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>

/* How often --wait looks at the database. */
#define POLL_MS 200

/* Looks once: returns -1 while the outcome is not there, else the exit code,
 * with the outcome in *result (a JSON object) and printed unless json. */
static int poll_outcome(PGconn *conn, wait_kind kind, const char *ce_id, const char *order_id,
                        const char *since, int json, cJSON **result)
{
    static const char *const sql[] = {
        [WAIT_ORDER] = "select o.id as order_id, o.status, o.status_reason as reason, o.version,"
                       " e.status as execution_status from orders o left join executions e"
                       " on e.order_id = o.id and e.machine = 'OrderProcess'"
                       " where o.source_event_id = $1 and e.status is distinct from 'RUNNING'",
        [WAIT_UPDATE] = "select h.outcome, h.from_state, coalesce(h.to_state,"
                        " h.detail->>'trigger') as to_state, h.detail->>'reason' as reason,"
                        " o.status, o.version from execution_history h"
                        " join executions e on e.id = h.execution_id"
                        " join orders o on o.id = e.order_id"
                        " where h.event_id = $1 and e.order_id = $2::uuid"
                        " order by h.at, h.seq limit 1",
        [WAIT_RETURN] = "select r.id as return_id, r.status, r.status_reason as reason,"
                        " r.refund_cents, e.status as execution_status from returns r"
                        " left join executions e on e.return_id = r.id"
                        " where r.source_event_id = $1 and e.status is distinct from 'RUNNING'",
    };
    const char *vals[2] = {ce_id, order_id};
    PGresult *r = NULL;
    int code = orderctl_db_query(conn, sql[kind], kind == WAIT_UPDATE ? 2 : 1, vals, &r);

    if (code != EX_OK)
        return code;
    if (PQntuples(r) == 0) {
        PQclear(r);
        /* Not processed, or dead-lettered: the dead letter keeps the ce_id.
         * created_at (indexed) after the publication narrows the search. */
        const char *dvals[2] = {ce_id, since};
        code = orderctl_db_query(conn,
                                 "select id as dead_letter_id, error_code, reason, worker"
                                 " from dead_letters where created_at >= $2::timestamptz"
                                 " and ce_id = $1 order by id limit 1",
                                 2, dvals, &r);
        if (code != EX_OK)
            return code;
        if (PQntuples(r) == 0) {
            PQclear(r);
            return -1;
        }
        *result = of_db_row_json(r, 0);
        if (!json)
            printf("dead-lettered by %s as dead letter %s: %s: %s\n", PQgetvalue(r, 0, 3),
                   PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2));
        PQclear(r);
        return EX_DATAERR;
    }
    *result = of_db_row_json(r, 0);
    int rc_col = PQfnumber(r, "reason");
    const char *reason = rc_col < 0 || PQgetisnull(r, 0, rc_col) ? "" : PQgetvalue(r, 0, rc_col);
    const char *sep = reason[0] != '\0' ? " " : "";
    switch (kind) {
    case WAIT_ORDER:
        code = strcmp(PQgetvalue(r, 0, 1), "CONFIRMED") == 0 ? EX_OK : EX_DATAERR;
        if (!json)
            printf("order %s %s%s%s\n", PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), sep, reason);
        break;
    case WAIT_UPDATE:
        code = strcmp(PQgetvalue(r, 0, 0), "applied") == 0 ? EX_OK : EX_DATAERR;
        if (!json && code == EX_OK)
            printf("applied: %s -> %s (order version %s)\n", PQgetvalue(r, 0, 1),
                   PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 5));
        else if (!json)
            printf("%s: %s\n", PQgetvalue(r, 0, 0), reason);
        break;
    case WAIT_RETURN:
        code = strcmp(PQgetvalue(r, 0, 1), "REFUND_COMPLETED") == 0 ? EX_OK : EX_DATAERR;
        if (!json && code == EX_OK)
            printf("return %s %s refund %s cents\n", PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1),
                   PQgetvalue(r, 0, 3));
        else if (!json)
            printf("return %s %s%s%s\n", PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), sep, reason);
        break;
    }
    PQclear(r);
    return code;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Polls until the outcome is there or wait_ms passed. */
int submit_wait_outcome(PGconn *conn, wait_kind kind, const char *ce_id, const char *order_id,
                        const char *since, int64_t wait_ms, int json, cJSON **result)
{
    int64_t deadline = mono_ms() + wait_ms;
    for (;;) {
        int code = poll_outcome(conn, kind, ce_id, order_id, since, json, result);
        if (code >= 0)
            return code;
        if (mono_ms() >= deadline)
            break;
        struct timespec pause = {0, POLL_MS * 1000000L};
        nanosleep(&pause, NULL);
    }
    fprintf(stderr,
            "orderctl: gave up waiting after %lld ms: event \"%s\" is not processed yet (are the "
            "workers running?)\n",
            (long long)wait_ms, ce_id);
    return EX_TEMPFAIL;
}

/* Connects for --wait and, for update and return, checks that the order
 * exists. since receives the database's time before the publication. */
int submit_wait_prepare(const publish_settings *s, const char *order_id, PGconn **conn,
                        char since[64])
{
    PGresult *r = NULL;
    int code;

    *conn = NULL;
    since[0] = '\0';
    if (s->wait == 0)
        return EX_OK;
    code = orderctl_db_connect(s->c.database_url, conn);
    if (code != EX_OK)
        return code;
    const char *vals[1] = {order_id};
    code = orderctl_db_query(*conn,
                             "select now()::text, $1::uuid is null"
                             " or exists (select 1 from orders where id = $1::uuid)",
                             1, vals, &r);
    if (code != EX_OK)
        return code;
    snprintf(since, 64, "%s", PQgetvalue(r, 0, 0));
    if (PQgetvalue(r, 0, 1)[0] != 't') {
        fprintf(stderr, "orderctl: order \"%s\" not found\n", order_id);
        code = EX_NOINPUT;
    }
    PQclear(r);
    return code;
}
