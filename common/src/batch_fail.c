/* batch_fail.c: a failed batch transaction: rollback, classification, retries, isolation.
 *
 * Failures are classified once (of_batch_classify) into:
 *   - wait: the connection is gone; retried when it is back, not counted,
 *     since no event is at fault while Postgres is away;
 *   - transient: memory, a serialization failure, a deadlock, a lock or
 *     statement timeout; retried with a capped exponential backoff and
 *     counted: after retry-limit of them the batch runs one event per
 *     transaction, and a single event that still fails is dead-lettered as
 *     RETRIES_EXHAUSTED (orderflow_retries_exhausted_total);
 *   - permanent: everything else. A step that failed names its event
 *     (b->fault), which is dead-lettered while the others run again; a SQL
 *     error splits the batch into one-event transactions so that only the
 *     event at fault is dead-lettered.
 * A dead letter that itself fails permanently is written again in its
 * escaped form (every header base64, the reason in ASCII), which holds no
 * text from the record; only if that fails too (the database refuses any
 * dead letter) does the runtime keep retrying, with /readyz reporting the
 * stall. No path retries one event forever: each retry either waits for the
 * connection or counts against retry-limit. */
#include "worker_internal.h"

#include "orderflow/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

of_fail_class of_batch_classify(int status, const char *sqlstate)
{
    if (status == OF_ECONN || status == OF_ECANCELED)
        return FAIL_WAIT;
    if (status == OF_ESQL) {
        if (sqlstate != NULL && strncmp(sqlstate, "08", 2) == 0)
            return FAIL_WAIT;
        return of_db_sqlstate_transient(sqlstate) ? FAIL_TRANSIENT : FAIL_PERMANENT;
    }
    return of_err_transient(status) ? FAIL_TRANSIENT : FAIL_PERMANENT;
}

static void restore_range(of_worker *w)
{
    of_worker_batch *b = &w->batch;
    for (size_t i = b->lo; i < b->hi; i++) {
        b->items[i].state = b->items[i].initial;
        b->items[i].on_record = false;
        if (!b->items[i].settled)
            b->items[i].outcome = NULL;
    }
    of_batch_free_outbox(b);
    b->applied.n = 0;
    b->fault = -1;
}

static void on_retry_timer(uv_timer_t *t)
{
    of_worker *w = t->data;
    if (!of_db_ready(&w->db)) {
        uv_timer_start(&w->retry_timer, on_retry_timer, w->retry_ms, 0);
        return;
    }
    of_batch_begin_txn(w);
}

static void schedule_retry(of_worker *w, const char *why)
{
    of_worker_batch *b = &w->batch;
    if (w->stopping) {
        /* Nothing of the batch was acknowledged: it is redelivered later. */
        of_log_info("shutting down; batch of %zu event(s) left for redelivery: %s", b->n, why);
        of_batch_finish(w);
        return;
    }
    w->n_retries++;
    of_obs_retry(w);
    of_log_warn("transaction for %zu event(s) failed, retrying in %" PRIu64 " ms: %s",
                b->hi - b->lo, w->retry_ms, why);
    uv_timer_start(&w->retry_timer, on_retry_timer, w->retry_ms, 0);
    w->retry_ms =
        w->retry_ms * 2 > (uint64_t)w->cfg.retry_max ? (uint64_t)w->cfg.retry_max : w->retry_ms * 2;
}

/* Runs the batch from b->lo one event per transaction. */
static void isolate(of_worker *w, const char *why)
{
    of_worker_batch *b = &w->batch;
    of_log_warn("transaction for %zu events failed (%s); running them one by one", b->hi - b->lo,
                why);
    w->isolating = true;
    w->attempts = 0;
    b->hi = b->lo + 1;
    of_batch_begin_txn(w);
}

/* Dead-letters the single event of the transaction and runs it again. */
static void dead_letter_single(of_worker *w, const char *code, const char *why)
{
    of_worker_item *it = &w->batch.items[w->batch.lo];
    of_event_error_set(&it->err, OF_EVENT_ERR_INVALID_ATTRIBUTE, "%s", why);
    snprintf(it->dlq_code, sizeof it->dlq_code, "%s", code);
    it->state = it->initial = OF_ITEM_DEAD;
    w->attempts = 0;
    of_batch_begin_txn(w);
}

/* Transient failures of one transaction ran out. */
static void exhausted(of_worker *w, const char *why)
{
    of_worker_batch *b = &w->batch;
    of_worker_item *it = &b->items[b->lo];
    char reason[sizeof it->err.reason];
    w->n_exhausted++;
    of_obs_exhausted(w);
    if (b->hi - b->lo > 1) {
        isolate(w, why);
        return;
    }
    if (it->state == OF_ITEM_DEAD) {
        /* Its dead letter is what keeps failing: the database refuses it,
         * which no event can cause. Keep trying; /readyz shows the stall. */
        of_log_error("could not dead-letter the event at %s/%" PRId32 "@%" PRId64 " after %" PRId64
                     " attempts: %s",
                     it->rec.topic, it->rec.partition, it->rec.offset, w->attempts, why);
        w->attempts = 0;
        schedule_retry(w, why);
        return;
    }
    snprintf(reason, sizeof reason, "gave up after %" PRId64 " transient failures: %s", w->attempts,
             why);
    of_log_error("%s", reason);
    dead_letter_single(w, "RETRIES_EXHAUSTED", reason);
}

/* A permanent failure: dead-letter the event at fault, or find it. */
static void permanent(of_worker *w, const char *sqlstate, const char *why)
{
    of_worker_batch *b = &w->batch;
    if (b->fault >= 0) {
        /* A step failed for this event; the rest of the batch runs again without it. */
        of_worker_item *it = &b->items[b->fault];
        of_event_error saved = it->err;
        restore_range(w);
        it->err = saved;
        snprintf(it->dlq_code, sizeof it->dlq_code, "PROCESSING_FAILED");
        it->state = it->initial = OF_ITEM_DEAD;
        of_batch_begin_txn(w);
        return;
    }
    restore_range(w);
    if (b->hi - b->lo > 1) {
        isolate(w, why);
        return;
    }
    of_worker_item *it = &b->items[b->lo];
    if (it->state != OF_ITEM_DEAD && !it->rechecked && sqlstate != NULL &&
        strcmp(sqlstate, "23505") == 0) {
        /* A unique violation on one event: most likely another consumer
         * (a replica that took over its partition) committed the same event
         * while this transaction ran. Run it once more: the inbox check
         * then finds it and it is a duplicate, not a dead letter. */
        of_log_info("unique violation (%s); checking the inbox again before dead-lettering", why);
        it->rechecked = true;
        of_batch_begin_txn(w);
        return;
    }
    if (it->state != OF_ITEM_DEAD) {
        char reason[sizeof it->err.reason];
        snprintf(reason, sizeof reason, "could not apply event: %s", why);
        dead_letter_single(w, "PROCESSING_FAILED", reason);
        return;
    }
    if (!it->dlq_escaped) {
        /* The dead letter itself could not be stored as it is. */
        of_log_warn("could not store the dead letter as it is (%s); storing it escaped", why);
        it->dlq_escaped = true;
        of_batch_begin_txn(w);
        return;
    }
    /* Not even the escaped form: nothing of the record is at fault. */
    w->attempts++;
    if (w->attempts >= w->cfg.retry_limit)
        exhausted(w, why);
    else
        schedule_retry(w, why);
}

/* After the rollback (or the connection's loss): what next, by class. */
void of_batch_recover(of_worker *w, of_fail_class cls, const char *sqlstate, const char *why)
{
    if (w->stopping) {
        schedule_retry(w, why);
        return;
    }
    switch (cls) {
    case FAIL_WAIT:
        restore_range(w);
        schedule_retry(w, why);
        break;
    case FAIL_TRANSIENT:
        restore_range(w);
        w->attempts++;
        if (w->attempts >= w->cfg.retry_limit)
            exhausted(w, why);
        else
            schedule_retry(w, why);
        break;
    case FAIL_PERMANENT:
        permanent(w, sqlstate, why);
        break;
    }
}

/* What failed, kept while the transaction is rolled back. */
typedef struct failure {
    of_worker *w;
    of_fail_class cls;
    char sqlstate[6];
    char why[600];
} failure;

static void on_rolled_back(of_db *db, of_db_pipeline *p, int status, void *arg)
{
    failure *f = arg;
    of_worker *w = f->w;
    of_fail_class cls = f->cls;
    char why[sizeof f->why], sqlstate[sizeof f->sqlstate];
    memcpy(why, f->why, sizeof why);
    memcpy(sqlstate, f->sqlstate, sizeof sqlstate);
    of_db_pipeline_free(p);
    free(p);
    free(f);
    of_batch_recover(w, cls, sqlstate, why);
}

/* Ends the failed transaction (a failed pipeline leaves it aborted; a lost
 * connection took it with it), then recovers. */
void of_batch_txn_failed(of_worker *w, int status, const char *sqlstate, const char *why)
{
    of_fail_class cls = of_batch_classify(status, sqlstate);
    if (status != OF_ECONN && status != OF_ECANCELED && of_db_ready(&w->db)) {
        of_db_pipeline *rb = malloc(sizeof *rb);
        failure *f = malloc(sizeof *f);
        if (rb != NULL && f != NULL) {
            of_db_pipeline_init(rb);
            f->w = w;
            f->cls = cls;
            snprintf(f->sqlstate, sizeof f->sqlstate, "%s", sqlstate ? sqlstate : "");
            snprintf(f->why, sizeof f->why, "%s", why);
            if (of_db_pipeline_add_sql(rb, "rollback", 0, NULL) == OF_OK &&
                of_db_submit(&w->db, rb, on_rolled_back, f) == OF_OK)
                return;
            of_db_pipeline_free(rb);
        }
        free(rb);
        free(f);
    }
    of_batch_recover(w, cls, sqlstate, why);
}

void of_batch_pipeline_failed(of_worker *w, const of_db_pipeline *p)
{
    char why[600];
    const char *stmt =
        p->failed_index >= 0 && (size_t)p->failed_index < p->n
            ? (p->cmds[p->failed_index].stmt ? p->cmds[p->failed_index].stmt : "ad hoc")
            : NULL;
    if (p->status == OF_ESQL)
        snprintf(why, sizeof why, "%s (SQLSTATE %s, statement %s)", p->error, p->sqlstate,
                 stmt ? stmt : "?");
    else
        snprintf(why, sizeof why, "%s", p->error[0] ? p->error : of_strerror(p->status));
    of_batch_txn_failed(w, p->status, p->sqlstate, why);
}
