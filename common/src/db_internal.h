/* db_internal.h: what the db module's sources (db.c, db_connect.c, db_pipeline.c) share; not
 * installed. */
#ifndef ORDERFLOW_DB_INTERNAL_H
#define ORDERFLOW_DB_INTERNAL_H

#include "orderflow/db.h"

/* Reconnect backoff: the first delay (again after every successful setup) and its cap. */
#define OF_DB_BACKOFF_MIN_MS 100
#define OF_DB_BACKOFF_MAX_MS 10000

/* db_pipeline.c */

/* Releases the results of p's last run. */
void of_db__clear_results(of_db_pipeline *p);
/* Appends one command (a statement by name, or ad hoc sql) with copies of its parameters. */
int of_db__add_cmd(of_db_pipeline *p, const char *stmt, const char *sql, int nparams,
                   const char *const *values, const int *lengths, const int *formats);

/* db.c */

/* Sets db's state and calls its state callback, only if the state changes. */
void of_db__set_state(of_db *db, of_db_state state);
/* Watches the current libpq socket for events, re-creating the watcher when libpq moved to another
 * socket. */
int of_db__watch_socket(of_db *db, int events) __attribute__((warn_unused_result));
/* Puts p at the head of db's queue (the session setup goes before any waiting pipeline). */
void of_db__enqueue_front(of_db *db, of_db_pipeline *p);
/* Drops the connection: logs why (password scrubbed), fails the pipeline in flight with OF_ECONN
 * and, unless db is closing, schedules a reconnect. */
void of_db__fail_connection(of_db *db, const char *why);
/* Ends the commands just sent with a sync, flushes, and watches the socket
 * (for writing too while libpq has output left); fails the connection when
 * any of that fails. */
void of_db__sync_and_watch(of_db *db);

/* db_connect.c */

/* Advances libpq's connect after a socket event; once connected, sends the session setup. */
void of_db__continue_connect(of_db *db);
/* Starts the retry timer with the current backoff plus jitter, then doubles the backoff. */
void of_db__schedule_reconnect(of_db *db);

#endif
