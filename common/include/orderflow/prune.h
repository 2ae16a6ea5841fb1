/* prune.h: retention: deleting rows nobody needs any more, in small batches.
 *
 * A prune target is one table's retention written down as data: the
 * statement that deletes at most one batch of its due rows (the oldest
 * first), the count of its due rows (for a dry run), the age of the oldest
 * row it is responsible for (a gauge) and, for a target kept per worker, how
 * to list the workers that have rows. The runtime brings its targets (inbox,
 * outbox, dead letters, executions); a domain or worker brings its own and
 * registers them with of_worker_prune_add(); the operator CLI's prune runs
 * the very same targets synchronously. Every statement is written once.
 *
 * Parameters, in this order, the scope first and only for a scoped target
 * (one whose rows belong to a worker: the inbox's consumer, a dead letter's
 * worker):
 *   delete_sql  [scope text,] retention in ms (bigint), batch size (integer);
 *               the command tag says how many rows it deleted
 *   count_sql   [scope,] retention in ms -> one row: the due rows
 *   oldest_sql  [scope] -> one row: the age in seconds of the oldest row the
 *               target is responsible for, NULL when there is none
 *   scopes_sql  no parameters -> every scope that has rows (the CLI)
 * Build them with OF_PRUNE_DELETE_SQL and OF_PRUNE_COUNT_SQL from one "due"
 * condition, so that the dry run counts exactly what the delete takes. Each
 * statement is one implicit transaction; FOR UPDATE SKIP LOCKED lets
 * replicas prune side by side without waiting for each other. Every due
 * condition needs an index that returns the oldest rows first (migration
 * 0009 has them).
 *
 * The pruner (of_pruner) runs targets on a libuv loop and a connection it
 * shares: every interval one cycle, which takes each target in turn, batch
 * after batch while a batch came back full, each batch one statement; it
 * yields to the loop between batches, stops at of_pruner_stop() and ends the
 * cycle early when the connection is not ready (the next cycle starts over).
 * After a target's last batch it refreshes the target's oldest-age gauge. It
 * counts rows in orderflow_pruned_rows_total{table} and logs one line per
 * cycle that deleted rows.
 *
 * Ownership: targets are static data. The pruner keeps pointers to its
 * connection and metrics registry (the caller's), owns its pipeline and its
 * timer; the caller closes the timer (a handle of the caller's loop) and
 * then calls of_pruner_free(). */
#ifndef ORDERFLOW_PRUNE_H
#define ORDERFLOW_PRUNE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "orderflow/config.h"
#include "orderflow/db.h"
#include "orderflow/metrics.h"

/* One table's retention (see above). */
typedef struct of_prune_target {
    const char *table;      /* the table: metric label, log, the CLI's --table */
    const char *delete_sql; /* deletes at most one batch of due rows, the oldest first */
    const char *count_sql;  /* counts the due rows (dry run) */
    const char *oldest_sql; /* age in seconds of the oldest row kept, NULL when none */
    const char *scopes_sql; /* lists the scopes that have rows; NULL: not scoped */
} of_prune_target;

/* A due condition's retention parameter as an interval before now(). */
#define OF_PRUNE_BEFORE(param) "now() - " param "::bigint * interval '1 millisecond'"
/* The delete of one batch: the due rows (condition due), oldest (by time)
 * first, at most the integer parameter limit of them, skipping rows another
 * transaction holds. The rows are named by ctid, which the row lock keeps
 * valid until the statement's transaction ends: the delete is a TID scan
 * whatever the planner estimates, never a join against the whole table. */
#define OF_PRUNE_DELETE_SQL(table, due, time, limit)                                               \
    "delete from " table " where ctid = any(array(select ctid from " table " where " due           \
    " order by " time " limit " limit "::integer for update skip locked))"
/* The dry run of the same condition. */
#define OF_PRUNE_COUNT_SQL(table, due) "select count(*) from " table " where " due

/* The runtime's targets. */
extern const of_prune_target of_prune_inbox;        /* a consumer's inbox rows; scope: consumer */
extern const of_prune_target of_prune_outbox;       /* published outbox rows, any worker's */
extern const of_prune_target of_prune_dead_letters; /* redriven dead letters; scope: worker */
extern const of_prune_target of_prune_executions;   /* finished executions and their history */

/* What is pruned and how (durations in ms). */
typedef struct of_prune_settings {
    int64_t interval;     /* time between cycles; 0 turns pruning off (workers) */
    int64_t batch;        /* most rows one statement deletes */
    int64_t inbox;        /* retention of inbox rows */
    int64_t outbox;       /* retention of published outbox rows */
    int64_t dead_letters; /* retention of redriven dead letters, after the last redrive */
    int64_t history;      /* retention of finished executions; 0 keeps them forever */
} of_prune_settings;

/* The shortest retention of inbox rows: a floor against a unit typed wrong
 * (the inbox must outlive the topics' retention; docs/operations.md). Below
 * a day a warning is logged at start. */
#define OF_PRUNE_MIN_INBOX_MS (60LL * 1000)
/* The shortest retention otherwise (history: or 0). */
#define OF_PRUNE_MIN_MS  (60LL * 1000)
#define OF_PRUNE_MAX_MS  (3650LL * 24 * 3600 * 1000)
#define OF_PRUNE_DAY_MS  (24LL * 3600 * 1000)
#define OF_PRUNE_HOUR_MS (3600LL * 1000)

/* of_config_item initialisers of the batch size and the runtime's
 * retentions, for an of_prune_settings at offset base of the settings
 * struct; workers and the CLI's prune share them (names, variables, defaults). */
#define OF_PRUNE_CFG_(base, field) ((base) + offsetof(of_prune_settings, field))
// clang-format off
#define OF_PRUNE_CONFIG(base)                                                                      \
    {"prune-batch", "ORDERFLOW_PRUNE_BATCH", "prune-batch", OF_CFG_INT, "1000",                    \
     "most rows one prune statement deletes (each batch is its own short transaction)",            \
     OF_PRUNE_CFG_(base, batch), 1, 100000},                                                       \
    {"retention-inbox", "ORDERFLOW_RETENTION_INBOX", "retention-inbox", OF_CFG_MS, "14d",          \
     "age after which inbox rows are pruned; at least 1m, and longer than the topics' retention "  \
     "plus the offsets' retention, or redelivered events take effect twice",                      \
     OF_PRUNE_CFG_(base, inbox), OF_PRUNE_MIN_INBOX_MS, OF_PRUNE_MAX_MS},                         \
    {"retention-outbox", "ORDERFLOW_RETENTION_OUTBOX", "retention-outbox", OF_CFG_MS, "1d",        \
     "age after publication at which outbox rows are pruned (unpublished rows never are)",         \
     OF_PRUNE_CFG_(base, outbox), OF_PRUNE_MIN_MS, OF_PRUNE_MAX_MS},                               \
    {"retention-dead-letters", "ORDERFLOW_RETENTION_DEAD_LETTERS", "retention-dead-letters",       \
     OF_CFG_MS, "30d",                                                                             \
     "age after the last redrive at which dead letters are pruned, with their redrives (never "    \
     "one that was not redriven)",                                                                 \
     OF_PRUNE_CFG_(base, dead_letters), OF_PRUNE_MIN_MS, OF_PRUNE_MAX_MS},                         \
    {"retention-history", "ORDERFLOW_RETENTION_HISTORY", "retention-history", OF_CFG_MS, "0",      \
     "age after they stopped at which finished executions are pruned with their history; 0 "      \
     "keeps them forever (the business record), else at least 1h",                                 \
     OF_PRUNE_CFG_(base, history), 0, OF_PRUNE_MAX_MS}
// clang-format on

/* Checks what the bounds of the table cannot say (a history retention of 0
 * or at least an hour). Returns 0, or OF_EINVAL with the reason in err. */
int of_prune_settings_check(const of_prune_settings *s, char *err, size_t size)
    __attribute__((warn_unused_result));

/* The values of a target's statement: the scope when the target is scoped,
 * then retention and batch (text) when not NULL (see above for which
 * statement takes which). Returns how many values were set (at most 3). */
int of_prune_params(const of_prune_target *t, const char *scope, const char *retention,
                    const char *batch, const char **values);

/* A target the pruner runs, with its retention and metric series. */
typedef struct of_prune_job {
    const of_prune_target *t; /* the target */
    int64_t retention_ms;     /* rows older than this are due */
    char retention[24];       /* the same as statement text */
    of_metric_series *pruned; /* orderflow_pruned_rows_total{table} */
    of_metric_series *oldest; /* orderflow_prune_oldest_age_seconds{table} */
    uint64_t cycle_rows;      /* rows deleted in the current cycle */
} of_prune_job;

#define OF_PRUNER_MAX_JOBS 8

typedef struct of_pruner {
    uv_loop_t *loop;                       /* the caller's loop */
    of_db *db;                             /* connection the statements run on (shared) */
    uv_timer_t timer;                      /* next cycle, or next batch of a cycle */
    uint64_t interval_ms;                  /* time between cycles; 0: never */
    char batch[24];                        /* batch size as statement text */
    int64_t batch_size;                    /* the same as a number */
    char scope[96];                        /* scope of scoped targets: the worker's name */
    of_prune_job jobs[OF_PRUNER_MAX_JOBS]; /* targets, run first to last */
    size_t n_jobs;                         /* used entries */
    size_t cur;                            /* job of the cycle in progress */
    bool counting;                         /* cur's deletes are done: its gauge query is next */
    bool in_cycle;                         /* a cycle is in progress */
    bool in_flight;                        /* p is submitted */
    bool stopping;                         /* of_pruner_stop() was called */
    uint64_t cycle_batches;                /* statements of the cycle in progress */
    uint64_t cycle_started;                /* uv_now() at its start */
    of_db_pipeline p;                      /* the statement in flight */
    of_metric *pruned;                     /* orderflow_pruned_rows_total */
    of_metric *oldest;                     /* orderflow_prune_oldest_age_seconds */
} of_pruner;

/* Sets p up: registers its two metric families in m and initialises the
 * timer on loop. scope is copied. Returns 0, OF_EINVAL or OF_ENOMEM. */
int of_pruner_init(of_pruner *p, uv_loop_t *loop, of_db *db, of_metrics *m, const char *scope,
                   uint64_t interval_ms, int64_t batch) __attribute__((warn_unused_result));
/* Adds a target with its retention; a retention of 0 leaves it out.
 * Returns 0, or OF_EINVAL (too many targets, or a table already added). */
int of_pruner_add(of_pruner *p, const of_prune_target *t, int64_t retention_ms)
    __attribute__((warn_unused_result));
/* Schedules the first cycle one interval from now (nothing when the interval is 0). */
void of_pruner_start(of_pruner *p);
/* No further statement; one in flight completes without a successor. */
void of_pruner_stop(of_pruner *p);
/* Releases the pipeline; the timer must be closed by then. */
void of_pruner_free(of_pruner *p);

#endif
