/* db.h: one PostgreSQL connection driven by the libuv loop.
 *
 * libpq runs in non-blocking mode: the connection is opened with
 * PQconnectStart/PQconnectPoll and its socket watched by a uv_poll_t; queries
 * go out in pipeline mode as an of_db_pipeline, a list of commands sent
 * together and answered together, so a whole batch costs one round trip.
 * Prepared statements registered at init are prepared again on every
 * (re)connect. A lost connection fails the pipeline in flight with
 * OF_ECONN and is re-opened with capped exponential backoff.
 *
 * Ownership: the caller owns the of_db and every of_db_pipeline; the
 * pipeline copies its parameters and owns the PGresults it collects until
 * of_db_pipeline_reset() or of_db_pipeline_free(). Each submitted pipeline
 * gets exactly one callback, also when the connection is closed
 * (OF_ECANCELED); a failed submit gets none. */
#ifndef ORDERFLOW_DB_H
#define ORDERFLOW_DB_H

#include <cjson/cJSON.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "orderflow/error.h"

/* Results are 0 or a negative of_err (error.h): OF_ESQL (a command failed;
 * see failed_index, sqlstate, error), OF_ECONN (the connection broke before
 * the pipeline finished), OF_ECANCELED (of_db_close() was called with the
 * pipeline queued), OF_ENOMEM, OF_ESTATE (not allowed now: closing, pipeline
 * in use). */

/* A statement prepared on every connection (which checks its SQL at connect).
 *
 * How it is sent depends on whether one plan serves it whatever the tables hold.
 * A generic statement reads no table but through its constraints (an INSERT of
 * VALUES or of unnest($n) arrays): it runs as the prepared statement, and
 * Postgres caches its plan. Any other statement finds its rows by keys in
 * arrays of 1 to batch-size elements: a generic plan is costed for an array of
 * unknown length against the statistics of the moment, so a plan cached while
 * a table is small keeps scanning it as it grows. Such a statement is sent with
 * its SQL on every call and planned for the arrays it is given. Foreign-key
 * checks, the bulk of all statements by count, keep their cached plans. */
typedef struct of_db_stmt {
    const char *name; /* statement name used by of_db_pipeline_add() */
    const char *sql;  /* SQL with $n parameters */
    bool generic;     /* true: its cached generic plan is right at any table size */
} of_db_stmt;

/* One command of a pipeline; storage belongs to the pipeline. */
typedef struct of_db_cmd {
    char *stmt;    /* prepared statement name (copied), or NULL when sql is set */
    char *sql;     /* ad hoc SQL (copied), or NULL */
    int nparams;   /* number of parameters */
    char **values; /* parameter values (copied; NULL = SQL NULL) */
    int *lengths;  /* byte lengths (used for binary parameters) */
    int *formats;  /* 0 = text, 1 = binary */
} of_db_cmd;

typedef struct of_db_pipeline of_db_pipeline;
typedef struct of_db of_db;

typedef void (*of_db_pipeline_cb)(of_db *db, of_db_pipeline *p, int status, void *arg);

/* A list of commands sent in one pipeline and their results. */
struct of_db_pipeline {
    of_db_cmd *cmds;      /* commands in order */
    size_t n;             /* number of commands */
    size_t cap;           /* allocated commands */
    PGresult **results;   /* one per command after completion (NULL if none) */
    int status;           /* OF_DB_* of the last run */
    long failed_index;    /* index of the failed command, or -1 */
    char sqlstate[6];     /* SQLSTATE of the failure, or "" */
    char error[512];      /* error text of the failure, or "" */
    of_db_pipeline_cb cb; /* completion callback (set by of_db_submit) */
    void *arg;            /* callback argument */
    of_db_pipeline *next; /* queue link, owned by of_db while queued */
    size_t cur;           /* index of the command whose results are being read */
    bool cur_has_result;  /* whether cur has produced a result yet */
    uint64_t started_ns;  /* uv_hrtime() at send, for metrics */
    uint64_t elapsed_ns;  /* send-to-sync duration of the last run */
    uint64_t session;     /* 0, or the of_db_session() this pipeline must run in */
};

typedef enum of_db_state {
    OF_DB_DISCONNECTED, /* no connection; a reconnect timer may be pending */
    OF_DB_CONNECTING,   /* PQconnectPoll in progress */
    OF_DB_PREPARING,    /* connected, session setup and statements being prepared */
    OF_DB_READY,        /* usable */
    OF_DB_CLOSING,      /* of_db_close() called */
} of_db_state;

typedef void (*of_db_state_cb)(of_db *db, of_db_state state, void *arg);

/* A connection and its queue; fields are private to db.c and db_connect.c. */
struct of_db {
    uv_loop_t *loop;               /* loop that drives the connection */
    char *conninfo;                /* libpq connection string or URI (copied) */
    char *secret;                  /* its password, scrubbed from every logged message, or NULL */
    char *name;                    /* label for logs, e.g. "main" */
    const of_db_stmt *stmts;       /* statements to prepare (caller's static array) */
    size_t n_stmts;                /* number of statements */
    PGconn *conn;                  /* libpq connection or NULL */
    struct of_db_poll *poll;       /* socket watcher (heap; freed in its close callback) */
    int poll_fd;                   /* socket the watcher watches, or -1 */
    uv_timer_t retry_timer;        /* reconnect backoff timer */
    uint64_t backoff_ms;           /* next reconnect delay */
    of_db_state state;             /* connection state */
    of_db_pipeline *head, *tail;   /* queued pipelines; head is in flight when sending */
    bool in_flight;                /* head has been sent */
    bool want_write;               /* PQflush returned 1 */
    of_db_pipeline setup;          /* internal pipeline: session settings + prepares */
    of_db_state_cb state_cb;       /* state change notification, or NULL */
    void *state_arg;               /* argument for state_cb */
    uint64_t reconnects;           /* connections lost or failed (metrics) */
    uint64_t session;              /* incremented each time a connection becomes ready */
    bool async_commit;             /* SET synchronous_commit = off on the session: for work
                                      that is redone when a commit is lost in a crash */
    uint64_t statement_timeout_ms; /* the session's statement_timeout (0: 30 s), set before
                                      the first connection */
    char session_set[128];         /* one more SET for every session (set before it
                                      connects), "" for none */
    void (*close_cb)(of_db *db);   /* called once everything is released */
    int pending_closes;            /* handles still closing */
};

/* The statement_timeout db's sessions get, in ms (statement_timeout_ms, or
 * 30 s when that is 0). */
uint64_t of_db_statement_timeout_ms(const of_db *db);
/* Checks that conninfo parses as a libpq connection string or URI. Returns
 * OF_OK (and, if password is not NULL, the password it holds as a heap string
 * or NULL) or OF_EINVAL. libpq's own parse message is never passed on: it
 * quotes the offending token, which may be part of the password. */
int of_db_conninfo_check(const char *conninfo, char **password) __attribute__((warn_unused_result));
/* Replaces every occurrence of secret (if not NULL or empty) in text by "****". */
void of_db_scrub(char *text, const char *secret);
/* Prepares db on loop; copies conninfo and name. Does not connect yet.
 * OF_EINVAL if conninfo does not parse (logged without its text). */
int of_db_init(of_db *db, uv_loop_t *loop, const char *conninfo, const char *name,
               const of_db_stmt *stmts, size_t n_stmts, of_db_state_cb state_cb, void *state_arg)
    __attribute__((warn_unused_result));
/* Starts connecting; returns at once. State changes are reported to state_cb. */
int of_db_start(of_db *db) __attribute__((warn_unused_result));
/* Queues p for sending when the connection is ready. p must not be queued twice. */
int of_db_submit(of_db *db, of_db_pipeline *p, of_db_pipeline_cb cb, void *arg)
    __attribute__((warn_unused_result));
/* Closes the connection; queued pipelines get OF_ECANCELED; close_cb runs
 * when the handles are released (then db may be freed). */
void of_db_close(of_db *db, void (*close_cb)(of_db *db));
bool of_db_ready(const of_db *db);
/* Identifies the current connection. A transaction spread over several
 * pipelines sets p->session to this value on its later pipelines, so they
 * fail with OF_ECONN instead of running outside the transaction when the
 * connection was replaced in between. */
uint64_t of_db_session(const of_db *db);
/* True when no pipeline is queued or in flight. */
bool of_db_idle(const of_db *db);

/* Pipelines. */
void of_db_pipeline_init(of_db_pipeline *p);
/* Appends a prepared statement call; values are copied (NULL entry = SQL NULL, text format). */
int of_db_pipeline_add(of_db_pipeline *p, const char *stmt, int nparams, const char *const *values)
    __attribute__((warn_unused_result));
/* Same with per-parameter lengths and formats (1 = binary), for bytea. */
int of_db_pipeline_add_bin(of_db_pipeline *p, const char *stmt, int nparams,
                           const char *const *values, const int *lengths, const int *formats)
    __attribute__((warn_unused_result));
/* Appends ad hoc SQL with text parameters (not prepared). */
int of_db_pipeline_add_sql(of_db_pipeline *p, const char *sql, int nparams,
                           const char *const *values) __attribute__((warn_unused_result));
/* Frees commands and results, keeps the allocation for reuse. */
void of_db_pipeline_reset(of_db_pipeline *p);
void of_db_pipeline_free(of_db_pipeline *p);
/* Result of command i, or NULL. */
PGresult *of_db_pipeline_result(const of_db_pipeline *p, size_t i);

/* True for SQLSTATEs worth retrying: connection loss (08), serialization
 * failure (40001), deadlock (40P01), shutdown (57P01..57P03), lock timeout
 * (55P03), resources (53), cancel/statement timeout (57014). */
bool of_db_sqlstate_transient(const char *sqlstate);

/* Builds a Postgres array literal from n strings ({"a","b"}), escaping quotes
 * and backslashes; a NULL item is SQL NULL. Cast it to any element type
 * ($1::integer[]). Returns a heap string the caller frees, or NULL. */
char *of_db_text_array(const char *const *items, size_t n);
/* Appends stmt with the n items as its $1 (an array literal as of_db_text_array
 * builds it) and, when extra is not NULL, extra as $2: the one shape of the
 * batch loads ("where id = any($1::uuid[])"). Returns 0 or a negative of_err. */
int of_db_pipeline_add_list(of_db_pipeline *p, const char *stmt, const char *const *items, size_t n,
                            const char *extra) __attribute__((warn_unused_result));

/* Row sets: one statement per kind for many rows.
 *
 * A row set gathers rows for one prepared statement whose parameters are
 * arrays, one per column ("insert ... select * from unnest($1::uuid[],
 * $2::text[])"): of_db_rows_add() appends a row (a NULL value is SQL NULL),
 * of_db_rows_flush() appends the statement with every column as an array
 * literal (as of_db_text_array builds it) to a pipeline and empties the set.
 * The batch engine keeps one set per statement kind, so a batch of N events
 * costs one statement per kind, not N. */
typedef struct of_db_col {
    char *s;    /* "{" and the elements so far (no closing brace) */
    size_t len; /* used */
    size_t cap; /* allocated */
} of_db_col;

typedef struct of_db_rows {
    const char *stmt; /* prepared statement name (not copied) */
    int n_cols;       /* columns: the statement's $1..$n_cols */
    size_t n;         /* rows since the last flush */
    of_db_col *cols;  /* one array literal per column, being built */
} of_db_rows;

/* Sets r up for stmt with n_cols columns. Returns 0 or OF_ENOMEM. */
int of_db_rows_init(of_db_rows *r, const char *stmt, int n_cols)
    __attribute__((warn_unused_result));
/* Appends one row of r->n_cols values; on failure r is unchanged. Returns 0 or OF_ENOMEM. */
int of_db_rows_add(of_db_rows *r, const char *const *values) __attribute__((warn_unused_result));
/* Appends r's statement to p when r has rows, then empties r (also on failure).
 * Returns 0 or a negative of_err. */
int of_db_rows_flush(of_db_rows *r, of_db_pipeline *p) __attribute__((warn_unused_result));
/* The same with, when with is true, one more parameter after the columns
 * ($n_cols+1): extra, or SQL NULL when extra is NULL. */
int of_db_rows_flush_with(of_db_rows *r, of_db_pipeline *p, bool with, const char *extra)
    __attribute__((warn_unused_result));
/* Drops r's rows. */
void of_db_rows_clear(of_db_rows *r);
void of_db_rows_free(of_db_rows *r);
/* Lower-case hex of len bytes (for a bytea column: decode(x, 'hex')), a heap
 * string, or NULL without memory. */
char *of_db_hex(const void *bytes, size_t len);

/* SQL for a timestamptz column as RFC 3339 UTC text with milliseconds. */
#define OF_DB_TS(col) "to_char((" col ") at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

/* Row row of r as a JSON object named by the columns: integers and numerics
 * as numbers, booleans, json/jsonb parsed, NULL as null, the rest as strings.
 * Returns NULL when out of memory. */
cJSON *of_db_row_json(const PGresult *r, int row);
/* Every row of r as an array of such objects, or NULL when out of memory. */
cJSON *of_db_rows_json(const PGresult *r);
/* A bytea column (text format), unescaped into a NUL-terminated heap copy
 * (free()); *null set for SQL NULL. Returns 0, or -1 when out of memory. */
int of_db_bytea_col(const PGresult *r, int row, int c, char **out, size_t *len, bool *null);

#endif
