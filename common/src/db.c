/* db.c: a non-blocking libpq connection in pipeline mode on a libuv loop: the socket watcher, the
 * queue of pipelines, sending them and reading their results, losing the connection, and closing;
 * establishing it (connect, session setup, reconnect backoff) is db_connect.c. */
#include "db_internal.h"

#include "orderflow/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The socket watcher lives on the heap so that a new one can be made when
 * libpq changes sockets while the old one is still closing. */
struct of_db_poll {
    uv_poll_t handle; /* libuv watcher of the libpq socket */
    of_db *db;        /* owner, NULL once detached */
};

static void db_on_poll(uv_poll_t *handle, int status, int events);
static void db_send_head(of_db *db);

void of_db__set_state(of_db *db, of_db_state state)
{
    if (db->state == state)
        return;
    db->state = state;
    if (db->state_cb != NULL)
        db->state_cb(db, state, db->state_arg);
}

static void maybe_finish_close(of_db *db)
{
    if (db->state == OF_DB_CLOSING && db->pending_closes == 0 && db->close_cb != NULL) {
        void (*cb)(of_db *) = db->close_cb;
        db->close_cb = NULL;
        of_db_pipeline_free(&db->setup);
        free(db->conninfo);
        free(db->name);
        free(db->secret);
        db->conninfo = NULL;
        db->name = NULL;
        db->secret = NULL;
        cb(db);
    }
}

static void poll_closed(uv_handle_t *handle)
{
    struct of_db_poll *p = handle->data;
    of_db *db = p->db;
    free(p);
    if (db != NULL) {
        db->pending_closes--;
        maybe_finish_close(db);
    }
}

static void stop_poll(of_db *db)
{
    if (db->poll == NULL)
        return;
    db->pending_closes++;
    uv_close((uv_handle_t *)&db->poll->handle, poll_closed);
    db->poll = NULL;
    db->poll_fd = -1;
}

/* Watches the current libpq socket for events, re-creating the watcher when
 * libpq moved to another socket. */
int of_db__watch_socket(of_db *db, int events)
{
    int fd = PQsocket(db->conn);
    if (fd < 0)
        return OF_ECONN;
    if (db->poll != NULL && db->poll_fd != fd)
        stop_poll(db);
    if (db->poll == NULL) {
        struct of_db_poll *p = calloc(1, sizeof *p);
        if (p == NULL)
            return OF_ENOMEM;
        if (uv_poll_init_socket(db->loop, &p->handle, fd) != 0) {
            free(p);
            return OF_ESTART;
        }
        p->db = db;
        p->handle.data = p;
        db->poll = p;
        db->poll_fd = fd;
    }
    return uv_poll_start(&db->poll->handle, events, db_on_poll) == 0 ? 0 : -1;
}

/* Queue handling. */

void of_db__enqueue_front(of_db *db, of_db_pipeline *p)
{
    p->next = db->head;
    db->head = p;
    if (db->tail == NULL)
        db->tail = p;
}

static of_db_pipeline *dequeue(of_db *db)
{
    of_db_pipeline *p = db->head;
    if (p == NULL)
        return NULL;
    db->head = p->next;
    if (db->head == NULL)
        db->tail = NULL;
    p->next = NULL;
    return p;
}

/* Completes the head pipeline with status and calls its callback. */
static void complete_head(of_db *db, int status)
{
    of_db_pipeline *p = dequeue(db);
    db->in_flight = false;
    if (p == NULL)
        return;
    p->status = status;
    p->elapsed_ns = uv_hrtime() - p->started_ns;
    if (p == &db->setup) {
        if (status == OF_OK) {
            db->backoff_ms = OF_DB_BACKOFF_MIN_MS;
            db->session++;
            of_db__set_state(db, OF_DB_READY);
            of_log_info("postgres connection \"%s\" ready", db->name);
        } else if (status == OF_ESQL && db->state != OF_DB_CLOSING) {
            /* Typically a statement that cannot be prepared because the
             * schema is not migrated yet: retry the whole connection later. */
            char why[600];
            size_t n_sets = p->n - db->n_stmts;
            const char *what = p->failed_index >= (long)n_sets
                                   ? db->stmts[(size_t)p->failed_index - n_sets].name
                                   : "session settings";
            snprintf(why, sizeof why, "could not set up session (%s): %s", what, p->error);
            of_db__fail_connection(db, why);
        }
        return;
    }
    if (p->cb != NULL)
        p->cb(db, p, status, p->arg);
}

/* Fails every queued pipeline (not the internal setup one) with status. */
static void fail_all(of_db *db, int status)
{
    while (db->head != NULL) {
        of_db_pipeline *p = db->head;
        if (p == &db->setup) {
            dequeue(db);
            db->in_flight = false;
            continue;
        }
        complete_head(db, status);
    }
}

/* Sends the head pipeline: every command, then a sync. */
/* The statement of that name, or NULL (the server then reports it unknown). */
static const of_db_stmt *find_stmt(const of_db *db, const char *name)
{
    for (size_t i = 0; i < db->n_stmts; i++)
        if (strcmp(db->stmts[i].name, name) == 0)
            return &db->stmts[i];
    return NULL;
}

static void db_send_head(of_db *db)
{
    of_db_pipeline *p = db->head;
    if (p == NULL || db->in_flight || db->conn == NULL)
        return;
    if (db->state != OF_DB_READY && p != &db->setup)
        return;
    if (p->session != 0 && p->session != db->session) {
        snprintf(p->error, sizeof p->error, "connection was replaced during the transaction");
        snprintf(p->sqlstate, sizeof p->sqlstate, "08006");
        complete_head(db, OF_ECONN);
        db_send_head(db);
        return;
    }
    of_db__clear_results(p);
    free(p->results);
    p->results = calloc(p->n ? p->n : 1, sizeof *p->results);
    if (p->results == NULL) {
        complete_head(db, OF_ENOMEM);
        return;
    }
    p->cur = 0;
    p->cur_has_result = false;
    p->failed_index = -1;
    p->sqlstate[0] = '\0';
    p->error[0] = '\0';
    p->started_ns = uv_hrtime();
    /* In flight from the first byte: a send that fails part-way completes
     * the pipeline with OF_ECONN instead of sending it again later. */
    db->in_flight = true;
    for (size_t i = 0; i < p->n; i++) {
        of_db_cmd *c = &p->cmds[i];
        const of_db_stmt *st = c->sql == NULL ? find_stmt(db, c->stmt) : NULL;
        const char *sql = c->sql != NULL ? c->sql : st != NULL && !st->generic ? st->sql : NULL;
        int ok;
        if (sql != NULL) /* planned for these parameters (see of_db_stmt) */
            ok = PQsendQueryParams(db->conn, sql, c->nparams, NULL, (const char *const *)c->values,
                                   c->lengths, c->formats, 0);
        else
            ok = PQsendQueryPrepared(db->conn, c->stmt, c->nparams, (const char *const *)c->values,
                                     c->lengths, c->formats, 0);
        if (!ok) {
            of_db__fail_connection(db, PQerrorMessage(db->conn));
            return;
        }
    }
    of_db__sync_and_watch(db);
}

/* Reads whatever results are available without blocking. */
static void db_read_results(of_db *db)
{
    if (!PQconsumeInput(db->conn)) {
        of_db__fail_connection(db, PQerrorMessage(db->conn));
        return;
    }
    while (db->conn != NULL && !PQisBusy(db->conn)) {
        of_db_pipeline *p = db->in_flight ? db->head : NULL;
        PGresult *r = PQgetResult(db->conn);
        if (r == NULL) {
            /* End of one command's results; nothing at all when idle. */
            if (p != NULL && p->cur_has_result && p->cur < p->n) {
                p->cur++;
                p->cur_has_result = false;
                continue;
            }
            break;
        }
        ExecStatusType st = PQresultStatus(r);
        if (p == NULL) {
            PQclear(r); /* stray result (notices are routed elsewhere) */
            continue;
        }
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            complete_head(db, p->failed_index >= 0 ? OF_ESQL : OF_OK);
            db_send_head(db);
            continue;
        }
        if (p->cur >= p->n) {
            PQclear(r);
            continue;
        }
        if (st == PGRES_FATAL_ERROR && p->failed_index < 0) {
            const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
            const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
            p->failed_index = (long)p->cur;
            snprintf(p->sqlstate, sizeof p->sqlstate, "%s", state ? state : "");
            snprintf(p->error, sizeof p->error, "%s", msg ? msg : PQerrorMessage(db->conn));
            of_db_scrub(p->error, db->secret);
        }
        PQclear(p->results[p->cur]);
        p->results[p->cur] = r;
        p->cur_has_result = true;
    }
    if (db->conn != NULL && db->state == OF_DB_READY && !db->in_flight && db->head != NULL)
        db_send_head(db);
}

int of_db_conninfo_check(const char *conninfo, char **password)
{
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &err);
    int rc = OF_OK;
    if (password != NULL)
        *password = NULL;
    PQfreemem(err); /* it may quote the password: never shown */
    if (opts == NULL)
        return OF_EINVAL;
    for (PQconninfoOption *o = opts; o->keyword != NULL && password != NULL; o++) {
        if (strcmp(o->keyword, "password") == 0 && o->val != NULL && o->val[0] != '\0') {
            *password = strdup(o->val);
            if (*password == NULL)
                rc = OF_ENOMEM;
        }
    }
    PQconninfoFree(opts);
    return rc;
}

void of_db_scrub(char *text, const char *secret)
{
    size_t n = secret != NULL ? strlen(secret) : 0;
    char *at;
    if (n == 0)
        return;
    while ((at = strstr(text, secret)) != NULL) {
        size_t rest = strlen(at + n);
        if (n >= 4) {
            memcpy(at, "****", 4);
            memmove(at + 4, at + n, rest + 1);
        } else {
            /* Shorter than the mask: masked in place, length kept. */
            memset(at, '*', n);
        }
    }
}

void of_db__fail_connection(of_db *db, const char *why)
{
    char msg[512];
    snprintf(msg, sizeof msg, "%s", why ? why : "unknown error");
    of_db_scrub(msg, db->secret);
    size_t len = strlen(msg);
    while (len > 0 && msg[len - 1] == '\n')
        msg[--len] = '\0';
    db->reconnects++;
    of_log_warn("postgres connection \"%s\" lost: %s", db->name, msg);
    stop_poll(db);
    if (db->conn != NULL) {
        PQfinish(db->conn);
        db->conn = NULL;
    }
    if (db->in_flight && db->head != NULL) {
        of_db_pipeline *p = db->head;
        snprintf(p->error, sizeof p->error, "%s", msg);
        snprintf(p->sqlstate, sizeof p->sqlstate, "08006");
        complete_head(db, OF_ECONN);
    }
    db->in_flight = false;
    if (db->state == OF_DB_CLOSING)
        return;
    of_db__set_state(db, OF_DB_DISCONNECTED);
    of_db__schedule_reconnect(db);
}

static void db_on_poll(uv_poll_t *handle, int status, int events)
{
    struct of_db_poll *p = handle->data;
    of_db *db = p->db;
    if (db == NULL || db->conn == NULL)
        return;
    if (status < 0) {
        of_db__fail_connection(db, uv_strerror(status));
        return;
    }
    if (db->state == OF_DB_CONNECTING) {
        of_db__continue_connect(db);
        return;
    }
    if ((events & UV_WRITABLE) && db->want_write) {
        int f = PQflush(db->conn);
        if (f < 0) {
            of_db__fail_connection(db, PQerrorMessage(db->conn));
            return;
        }
        db->want_write = f == 1;
        if (!db->want_write && of_db__watch_socket(db, UV_READABLE) != 0) {
            of_db__fail_connection(db, "could not watch socket");
            return;
        }
    }
    if (events & UV_READABLE)
        db_read_results(db);
}

int of_db_submit(of_db *db, of_db_pipeline *p, of_db_pipeline_cb cb, void *arg)
{
    if (db->state == OF_DB_CLOSING)
        return OF_ESTATE;
    for (of_db_pipeline *q = db->head; q != NULL; q = q->next) {
        if (q == p)
            return OF_ESTATE;
    }
    p->cb = cb;
    p->arg = arg;
    p->next = NULL;
    if (db->tail != NULL)
        db->tail->next = p;
    else
        db->head = p;
    db->tail = p;
    if (db->state == OF_DB_READY && !db->in_flight)
        db_send_head(db);
    return OF_OK;
}

bool of_db_ready(const of_db *db)
{
    return db->state == OF_DB_READY;
}

uint64_t of_db_session(const of_db *db)
{
    return db->session;
}

bool of_db_idle(const of_db *db)
{
    return db->head == NULL && !db->in_flight;
}

static void timer_closed(uv_handle_t *h)
{
    of_db *db = h->data;
    db->pending_closes--;
    maybe_finish_close(db);
}

void of_db_close(of_db *db, void (*close_cb)(of_db *db))
{
    if (db->state == OF_DB_CLOSING)
        return;
    of_db__set_state(db, OF_DB_CLOSING);
    db->close_cb = close_cb;
    fail_all(db, OF_ECANCELED);
    stop_poll(db);
    if (db->conn != NULL) {
        PQfinish(db->conn);
        db->conn = NULL;
    }
    db->pending_closes++;
    uv_close((uv_handle_t *)&db->retry_timer, timer_closed);
}

void of_db__sync_and_watch(of_db *db)
{
    if (!PQpipelineSync(db->conn)) {
        of_db__fail_connection(db, PQerrorMessage(db->conn));
        return;
    }
    int f = PQflush(db->conn);
    if (f < 0) {
        of_db__fail_connection(db, PQerrorMessage(db->conn));
        return;
    }
    db->want_write = f == 1;
    if (of_db__watch_socket(db, UV_READABLE | (db->want_write ? UV_WRITABLE : 0)) != 0)
        of_db__fail_connection(db, "could not watch socket");
}
