/* db_connect.c: establishing the db module's connection: libpq's non-blocking connect, the session
 * setup and prepares on every (re)connect, reconnect with backoff, of_db_init and of_db_start. */
#include "db_internal.h"

#include "orderflow/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t of_db_statement_timeout_ms(const of_db *db)
{
    return db->statement_timeout_ms != 0 ? db->statement_timeout_ms : 30000;
}

static int build_setup(of_db *db)
{
    /* No plan_cache_mode here: of_db_stmt says which statements run on
     * cached plans; the server's setting stays the DBA's. */
    static const char *const session_sql =
        "SET application_name = 'orderflow'; "
        "SET lock_timeout = '10s'; SET idle_in_transaction_session_timeout = '60s'";
    char timeout[64];
    snprintf(timeout, sizeof timeout, "SET statement_timeout = '%" PRIu64 "ms'",
             of_db_statement_timeout_ms(db));
    of_db_pipeline_reset(&db->setup);
    if (of_db__add_cmd(&db->setup, NULL, timeout, 0, NULL, NULL, NULL) != 0)
        return OF_ENOMEM;
    /* Pipeline mode allows no multi-statement strings, so one SET each. */
    const char *p = session_sql;
    while (*p != '\0') {
        const char *end = strchr(p, ';');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char one[128];
        snprintf(one, sizeof one, "%.*s", (int)len, p);
        if (of_db__add_cmd(&db->setup, NULL, one, 0, NULL, NULL, NULL) != 0)
            return OF_ENOMEM;
        p += len;
        while (*p == ';' || *p == ' ')
            p++;
    }
    if (db->async_commit &&
        of_db__add_cmd(&db->setup, NULL, "SET synchronous_commit = off", 0, NULL, NULL, NULL) != 0)
        return OF_ENOMEM;
    if (db->session_set[0] != '\0' &&
        of_db__add_cmd(&db->setup, NULL, db->session_set, 0, NULL, NULL, NULL) != 0)
        return OF_ENOMEM;
    return 0;
}

static void send_prepares(of_db *db)
{
    for (size_t i = 0; i < db->n_stmts; i++) {
        if (!PQsendPrepare(db->conn, db->stmts[i].name, db->stmts[i].sql, 0, NULL)) {
            of_db__fail_connection(db, PQerrorMessage(db->conn));
            return;
        }
    }
}

/* Connected: switch to non-blocking pipeline mode, then set up the session
 * and prepare the statements in one pipeline. Prepares are sent raw because
 * they are not of_db_cmd entries; their results are read like any other. */
static void on_connected(of_db *db)
{
    PQsetNoticeProcessor(db->conn, of_log_pq_notice, NULL);
    if (PQsetnonblocking(db->conn, 1) != 0 || !PQenterPipelineMode(db->conn)) {
        of_db__fail_connection(db, PQerrorMessage(db->conn));
        return;
    }
    of_db__set_state(db, OF_DB_PREPARING);
    if (build_setup(db) != 0) {
        of_db__fail_connection(db, "out of memory");
        return;
    }
    /* The prepares are appended to setup as placeholders so that results line up. */
    for (size_t i = 0; i < db->n_stmts; i++) {
        if (of_db__add_cmd(&db->setup, "", NULL, 0, NULL, NULL, NULL) != 0) {
            of_db__fail_connection(db, "out of memory");
            return;
        }
    }
    of_db__enqueue_front(db, &db->setup);
    /* Send the SET commands, then the prepares, then one sync. */
    of_db_pipeline *p = &db->setup;
    size_t n_sets = p->n - db->n_stmts;
    of_db__clear_results(p);
    free(p->results);
    p->results = calloc(p->n ? p->n : 1, sizeof *p->results);
    if (p->results == NULL) {
        of_db__fail_connection(db, "out of memory");
        return;
    }
    p->cur = 0;
    p->cur_has_result = false;
    p->failed_index = -1;
    p->started_ns = uv_hrtime();
    db->in_flight = true; /* a failed send dequeues it (see db_send_head) */
    for (size_t i = 0; i < n_sets; i++) {
        if (!PQsendQueryParams(db->conn, p->cmds[i].sql, 0, NULL, NULL, NULL, NULL, 0)) {
            of_db__fail_connection(db, PQerrorMessage(db->conn));
            return;
        }
    }
    send_prepares(db);
    if (db->conn == NULL)
        return;
    of_db__sync_and_watch(db);
}

void of_db__continue_connect(of_db *db)
{
    PostgresPollingStatusType st = PQconnectPoll(db->conn);
    switch (st) {
    case PGRES_POLLING_READING:
        if (of_db__watch_socket(db, UV_READABLE) != 0)
            of_db__fail_connection(db, "could not watch socket");
        break;
    case PGRES_POLLING_WRITING:
        if (of_db__watch_socket(db, UV_WRITABLE) != 0)
            of_db__fail_connection(db, "could not watch socket");
        break;
    case PGRES_POLLING_OK:
        on_connected(db);
        break;
    case PGRES_POLLING_FAILED:
    default:
        of_db__fail_connection(db, PQerrorMessage(db->conn));
        break;
    }
}

static void start_connect(of_db *db)
{
    if (db->state == OF_DB_CLOSING)
        return;
    db->conn = PQconnectStart(db->conninfo);
    if (db->conn == NULL) {
        of_db__fail_connection(db, "out of memory");
        return;
    }
    if (PQstatus(db->conn) == CONNECTION_BAD) {
        of_db__fail_connection(db, PQerrorMessage(db->conn));
        return;
    }
    of_db__set_state(db, OF_DB_CONNECTING);
    of_db__continue_connect(db);
}

static void on_retry_timer(uv_timer_t *t)
{
    start_connect(t->data);
}

void of_db__schedule_reconnect(of_db *db)
{
    uint64_t delay = db->backoff_ms;
    /* Jitter of up to a quarter spreads reconnects of many replicas. */
    delay += (uint64_t)(rand() % (int)(delay / 4 + 1));
    db->backoff_ms =
        db->backoff_ms * 2 > OF_DB_BACKOFF_MAX_MS ? OF_DB_BACKOFF_MAX_MS : db->backoff_ms * 2;
    uv_timer_start(&db->retry_timer, on_retry_timer, delay, 0);
}

int of_db_init(of_db *db, uv_loop_t *loop, const char *conninfo, const char *name,
               const of_db_stmt *stmts, size_t n_stmts, of_db_state_cb state_cb, void *state_arg)
{
    memset(db, 0, sizeof *db);
    db->loop = loop;
    db->stmts = stmts;
    db->n_stmts = n_stmts;
    db->poll_fd = -1;
    db->backoff_ms = OF_DB_BACKOFF_MIN_MS;
    db->state_cb = state_cb;
    db->state_arg = state_arg;
    db->state = OF_DB_DISCONNECTED;
    of_db_pipeline_init(&db->setup);
    if (of_db_conninfo_check(conninfo, &db->secret) != OF_OK) {
        free(db->secret);
        db->secret = NULL;
        of_log_error("the database URL is not a valid libpq connection string or URI (libpq's "
                     "message is withheld: it may quote the password)");
        return OF_EINVAL;
    }
    db->conninfo = strdup(conninfo);
    db->name = strdup(name ? name : "db");
    if (db->conninfo == NULL || db->name == NULL) {
        free(db->conninfo);
        free(db->name);
        free(db->secret);
        return OF_ENOMEM;
    }
    if (uv_timer_init(loop, &db->retry_timer) != 0) {
        free(db->conninfo);
        free(db->name);
        free(db->secret);
        return OF_ESTATE;
    }
    db->retry_timer.data = db;
    return OF_OK;
}

int of_db_start(of_db *db)
{
    if (db->state != OF_DB_DISCONNECTED)
        return OF_ESTATE;
    start_connect(db);
    return OF_OK;
}
