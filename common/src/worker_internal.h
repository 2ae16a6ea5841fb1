/* worker_internal.h: what the runtime's files (worker.c, batch.c, batch_fail.c, apply.c,
 * worker_obs.c) share; not installed. */
#ifndef ORDERFLOW_WORKER_INTERNAL_H
#define ORDERFLOW_WORKER_INTERNAL_H

#include "orderflow/park.h"
#include "orderflow/worker.h"

/* batch.c: a batch's transactions, offsets and publishing. */

/* First delay of the retry backoff (ms); a commit resets it. */
#define OF_RETRY_MIN_MS 100

/* What a failure means for the transaction (see batch_fail.c). */
typedef enum of_fail_class {
    FAIL_WAIT,      /* the connection is gone: retry when it is back, not counted */
    FAIL_TRANSIENT, /* retry with backoff, counted against retry-limit */
    FAIL_PERMANENT, /* no retry can mend it: dead-letter the event at fault */
} of_fail_class;

/* The class of a failure: status is an of_err (OF_ESQL with its SQLSTATE). */
of_fail_class of_batch_classify(int status, const char *sqlstate);

/* Takes over msgs[0..n) (the array stays the caller's) and runs them as a batch. */
void of_batch_start(of_worker *w, rd_kafka_message_t **msgs, size_t n);
/* During shutdown: drops the batch in progress unacknowledged (it is redelivered). */
void of_batch_abandon(of_worker *w);
/* True while the batch waits for its retry timer. */
bool of_batch_waiting(const of_worker *w);
/* The dead-letter code of an item: dlq_code, or its error code's name. */
const char *of_item_code(const of_worker_item *it);
/* Runs the transaction of [lo, hi): the load pipeline, then the writes. */
void of_batch_begin_txn(of_worker *w);
/* Drops the rows the transaction kept to publish. */
void of_batch_free_outbox(of_worker_batch *b);
/* The batch is done (committed or given up): free it, take the next one. */
void of_batch_finish(of_worker *w);

/* batch_fail.c: what a failed transaction leads to. */

/* Rolls back the failed transaction (status an of_err, sqlstate for
 * OF_ESQL), then recovers by class. */
void of_batch_txn_failed(of_worker *w, int status, const char *sqlstate, const char *why);
/* The same for a pipeline that failed: its error and statement say why. */
void of_batch_pipeline_failed(of_worker *w, const of_db_pipeline *p);
/* After the rollback (or the connection's loss): retry, isolate or dead-letter. */
void of_batch_recover(of_worker *w, of_fail_class cls, const char *sqlstate, const char *why);

/* Takes over items[0..n) (one parked key's events, read by park.c) and runs
 * them as a batch of their own. */
void of_batch_start_replay(of_worker *w, of_worker_item *items, size_t n);

/* park.c: parking a key instead of blocking its partition, and replaying it. */

extern const of_db_stmt of_park_stmts[];
extern const size_t of_park_n_stmts;
/* True when it may be parked now: it has a key, and parking is on (and the
 * batch is not its key's last replay). */
bool of_park_allowed(const of_worker *w, const of_worker_item *it);
/* Marks it PARKED with code and a reason. */
void of_park_item(of_worker *w, of_worker_item *it, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Parks it when an earlier event of its key in the transaction parked;
 * returns whether it did. */
bool of_park_held(of_worker *w, of_worker_item *it);
/* Appends the check of the transaction's keys (or a replay's key lock). */
int of_park_load(of_worker *w, of_db_pipeline *lp) __attribute__((warn_unused_result));
/* Parks the pending items whose keys the check found parked. */
void of_park_read(of_worker *w, const of_db_pipeline *lp);
/* Appends the parked items' rows (or a replay's deletes and key update). */
int of_park_write(of_worker *w, of_db_pipeline *wp) __attribute__((warn_unused_result));
/* The transaction committed: counters, and a replay stops at a key parked again. */
void of_park_committed(of_worker *w, const of_db_pipeline *wp);
/* Logs a move of the key of it by the lifecycle table (park.h). */
void of_park_note(const of_worker_item *it, of_park_move move, const char *detail);

/* park_replay.c */

/* Starts the timer that looks for due keys. */
void of_park_start(of_worker *w);
/* Between batches: claims a due key when one may be due; true when a claim
 * is in flight (the worker is busy until it ends). */
bool of_park_claim(of_worker *w);

/* worker.c */

/* The batch ended (committed or abandoned): poll the next one, or go on with shutdown. */
void of_worker_batch_done(of_worker *w);

/* apply.c: the per-batch routine. */

/* Fills it from the Kafka message m (taken over), then parses, decodes and
 * routes it: PENDING, or DEAD with its reason. */
void of_apply_prepare(of_worker *w, of_worker_item *it, rd_kafka_message_t *m);
/* Parses, decodes and routes it, whose record view is filled. */
void of_apply_classify(of_worker *w, of_worker_item *it);

/* Appends the machine's entity load and the handler's loads for the pending items. */
int of_apply_load(of_worker *w, of_worker_batch *b, of_db_pipeline *lp)
    __attribute__((warn_unused_result));
/* Applies every pending item of [lo, hi) to wp. On an error, b->fault names the
 * event at fault when there is one. */
int of_apply_run(of_worker *w, of_worker_batch *b, const of_db_pipeline *lp, of_db_pipeline *wp)
    __attribute__((warn_unused_result));

/* The transaction's row sets: set up (0 or OF_ENOMEM), emptied, released. */
int of_apply_rows_init(of_worker *w) __attribute__((warn_unused_result));
void of_apply_rows_clear(of_worker *w);
void of_apply_rows_free(of_worker *w);
/* Appends the current wave's row sets to wp (the handler's in order, then the
 * machine's) and starts the next wave. Returns 0 or a negative of_err. */
int of_apply_flush(of_worker *w, of_db_pipeline *wp) __attribute__((warn_unused_result));

/* backpressure.c: holding (no new batch) while over pause-above-txn or pause-above-backlog. */

/* Its metrics and timer (after of_obs_init). Returns 0 or OF_ENOMEM. */
int of_bp_init(of_worker *w) __attribute__((warn_unused_result));
/* True while no batch may start. */
bool of_bp_holding(const of_worker *w);
/* A batch transaction committed after txn_ms (load and write pipelines). */
void of_bp_committed(of_worker *w, double txn_ms);
/* The outbox backlog was measured. */
void of_bp_backlog(of_worker *w, double backlog);
/* What holds the worker, for /readyz, or NULL while it runs freely. */
const char *of_bp_state(const of_worker *w, char *buf, size_t size);
/* Shutdown: no cool-down ends any more; then the timer is closed; then freed. */
void of_bp_stop(of_worker *w);
void of_bp_close(of_worker *w, void (*close_handle)(of_worker *w, uv_handle_t *h));
void of_bp_free(of_worker *w);

/* worker_obs.c: metrics, /healthz, /readyz, /metrics. */

int of_obs_init(of_worker *w) __attribute__((warn_unused_result));
int of_obs_kafka_conf(of_worker *w, rd_kafka_conf_t *conf, char *errstr, size_t size)
    __attribute__((warn_unused_result));
void of_obs_start(of_worker *w);
void of_obs_polled(of_worker *w);
/* The transaction [lo, hi) committed with write pipeline wp (NULL: none was needed). */
void of_obs_committed(of_worker *w, const of_db_pipeline *wp);
void of_obs_retry(of_worker *w);
void of_obs_exhausted(of_worker *w);
/* Closes the endpoint and the stats timer; each close decrements w->closing when done. */
void of_obs_close(of_worker *w, void (*close_handle)(of_worker *, uv_handle_t *));
void of_obs_free(of_worker *w);

#endif
