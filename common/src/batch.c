/* batch.c: one polled batch through its transactions: retries, isolation, dead letters, offsets.
 *
 * Every record ends in one of three ways: its effect committed, recorded as
 * a no-op (duplicate, ignored, rejected), or dead-lettered. Failures are
 * classified once (classify) into:
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
 * stall. */
#include "worker_internal.h"

#include "orderflow/dlq.h"
#include "orderflow/failpoint.h"
#include "orderflow/inbox.h"
#include "orderflow/log.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

static void begin_txn(of_worker *w);

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

const char *of_item_code(const of_worker_item *it)
{
    return it->dlq_code[0] != '\0' ? it->dlq_code : of_event_code_name(it->err.code);
}

/* Keeps m (taken over) to publish after commit, conditionally on command cmd. */
static int keep_for_publish(of_worker_batch *b, of_message *m, long cmd)
{
    if (b->n_outbox == b->cap_outbox) {
        size_t cap = b->cap_outbox ? b->cap_outbox * 2 : 64;
        of_worker_out *o = realloc(b->outbox, cap * sizeof *o);
        if (o == NULL)
            return OF_ENOMEM;
        b->outbox = o;
        b->cap_outbox = cap;
    }
    b->outbox[b->n_outbox].m = *m;
    b->outbox[b->n_outbox].cmd = cmd;
    b->n_outbox++;
    memset(m, 0, sizeof *m);
    return OF_OK;
}

int of_worker_emit(of_worker_batch *b, of_message *m)
{
    int rc = of_outbox_rows_add(&b->w->outbox_rows, m);
    if (rc != OF_OK)
        return rc;
    return keep_for_publish(b, m, -1);
}

static of_log_ctx item_ctx(const of_worker_item *it)
{
    of_log_ctx ctx = {NULL, NULL, it->rec.topic, it->rec.partition, it->rec.offset};
    if (it->parsed) {
        ctx.ce_id = it->ev.id;
        if (it->ev.has_subject)
            ctx.subject = it->ev.subject;
    }
    return ctx;
}

/* Batch bookkeeping. */

static void free_outbox(of_worker_batch *b)
{
    for (size_t i = 0; i < b->n_outbox; i++)
        of_message_free(&b->outbox[i].m);
    b->n_outbox = 0;
}

static void free_items(of_worker *w)
{
    of_worker_batch *b = &w->batch;
    for (size_t i = 0; i < b->n; i++) {
        of_worker_item *it = &b->items[i];
        if (w->h->item_free != NULL)
            w->h->item_free(w->h->ctx, it);
        if (it->parsed)
            of_event_free(&it->ev);
        free(it->headers);
        rd_kafka_message_destroy(it->msg);
    }
    free(b->items);
    free_outbox(b);
    free(b->outbox);
    free(b->applied.v);
    free(b->entities);
    memset(b, 0, sizeof *b);
}

static void finish_batch(of_worker *w)
{
    free_items(w);
    w->busy = false;
    of_consumer_set_busy(&w->consumer, false);
    w->isolating = false;
    w->attempts = 0;
    of_db_pipeline_reset(&w->lp);
    of_db_pipeline_reset(&w->wp);
    of_worker_batch_done(w);
}

void of_batch_abandon(of_worker *w)
{
    uv_timer_stop(&w->retry_timer);
    finish_batch(w);
}

bool of_batch_waiting(const of_worker *w)
{
    return uv_is_active((const uv_handle_t *)&w->retry_timer);
}

void of_batch_start(of_worker *w, rd_kafka_message_t **msgs, size_t n)
{
    of_worker_batch *b = &w->batch;
    memset(b, 0, sizeof *b);
    b->w = w;
    b->fault = -1;
    b->items = calloc(n, sizeof *b->items);
    if (b->items == NULL) {
        /* Without memory the messages cannot be kept; drop them unacknowledged
         * so they are delivered again after a restart. */
        of_log_error("could not allocate a batch of %zu events; exiting to be restarted", n);
        for (size_t i = 0; i < n; i++)
            rd_kafka_message_destroy(msgs[i]);
        w->exit_code = EX_SOFTWARE;
        raise(SIGTERM);
        return;
    }
    b->n = n;
    for (size_t i = 0; i < n; i++)
        of_apply_prepare(w, &b->items[i], msgs[i]);
    /* The same ce_id twice in one batch: the second is a duplicate (the inbox
     * would only see the first once both are in the same transaction). */
    for (size_t i = 0; i < n; i++) {
        if (b->items[i].state != OF_ITEM_PENDING)
            continue;
        for (size_t j = 0; j < i; j++) {
            if (b->items[j].state == OF_ITEM_PENDING &&
                strcmp(b->items[j].ev.id, b->items[i].ev.id) == 0) {
                b->items[i].state = b->items[i].initial = OF_ITEM_DUPLICATE;
                break;
            }
        }
    }
    b->lo = 0;
    b->hi = n;
    w->busy = true;
    /* A batch that runs long (a slow or absent database) pauses fetching and
     * keeps serving the group meanwhile (kafka.h). */
    of_consumer_set_busy(&w->consumer, true);
    w->attempts = 0;
    w->progress_at = uv_now(w->loop);
    w->n_batches++;
    w->n_events += n;
    of_obs_polled(w);
    begin_txn(w);
}

/* Transactions. */

static void restore_range(of_worker *w)
{
    of_worker_batch *b = &w->batch;
    for (size_t i = b->lo; i < b->hi; i++) {
        b->items[i].state = b->items[i].initial;
        b->items[i].on_record = false;
        if (!b->items[i].settled)
            b->items[i].outcome = NULL;
    }
    free_outbox(b);
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
    begin_txn(w);
}

static void schedule_retry(of_worker *w, const char *why)
{
    of_worker_batch *b = &w->batch;
    if (w->stopping) {
        /* Nothing of the batch was acknowledged: it is redelivered later. */
        of_log_info("shutting down; batch of %zu event(s) left for redelivery: %s", b->n, why);
        finish_batch(w);
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
    begin_txn(w);
}

/* Dead-letters the single event of the transaction and runs it again. */
static void dead_letter_single(of_worker *w, const char *code, const char *why)
{
    of_worker_item *it = &w->batch.items[w->batch.lo];
    of_event_error_set(&it->err, OF_EVENT_ERR_INVALID_ATTRIBUTE, "%s", why);
    snprintf(it->dlq_code, sizeof it->dlq_code, "%s", code);
    it->state = it->initial = OF_ITEM_DEAD;
    w->attempts = 0;
    begin_txn(w);
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
        begin_txn(w);
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
        begin_txn(w);
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
        begin_txn(w);
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
static void recover(of_worker *w, of_fail_class cls, const char *sqlstate, const char *why)
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
    recover(w, cls, sqlstate, why);
}

/* Ends the failed transaction (a failed pipeline leaves it aborted; a lost
 * connection took it with it), then recovers. */
static void txn_failed(of_worker *w, int status, const char *sqlstate, const char *why)
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
    recover(w, cls, sqlstate, why);
}

static void pipeline_failed(of_worker *w, const of_db_pipeline *p)
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
    txn_failed(w, p->status, p->sqlstate, why);
}

/* The transaction of [lo, hi) committed (p), or was not needed (p NULL):
 * log, store the offsets, publish, go on. */
static void settle(of_worker *w, const of_db_pipeline *p)
{
    of_worker_batch *b = &w->batch;
    rd_kafka_message_t **msgs;
    size_t n = 0;

    w->retry_ms = OF_RETRY_MIN_MS;
    w->attempts = 0;
    w->progress_at = uv_now(w->loop);
    of_obs_committed(w, p);
    msgs = calloc(b->hi - b->lo, sizeof *msgs);
    for (size_t i = b->lo; i < b->hi; i++) {
        of_worker_item *it = &b->items[i];
        of_log_ctx ctx = item_ctx(it);
        if (msgs != NULL)
            msgs[n++] = it->msg;
        switch (it->state) {
        case OF_ITEM_DONE:
            w->n_applied++;
            of_log_write(OF_LOG_DEBUG, &ctx, "event %s (%s)", it->outcome ? it->outcome : "applied",
                         it->ev.type);
            break;
        case OF_ITEM_DUPLICATE:
            w->n_duplicates++;
            of_log_write(OF_LOG_INFO, &ctx,
                         it->on_record ? "duplicate event skipped (its effect is on record; "
                                         "its inbox row was pruned)"
                                       : "duplicate event skipped");
            break;
        case OF_ITEM_DEAD:
            w->n_dead++;
            of_log_write(OF_LOG_WARN, &ctx, "event dead-lettered: %s: %s", of_item_code(it),
                         it->err.reason);
            break;
        case OF_ITEM_PENDING:
            of_log_write(OF_LOG_ERROR, &ctx, "event left pending by the handler");
            break;
        }
    }
    if (p != NULL)
        of_failpoint_crash("crash-after-commit");
    /* Offsets only now: the transaction holding the effects is durable. */
    if (msgs != NULL) {
        if (of_consumer_store(&w->consumer, msgs, n) != 0)
            of_log_warn("could not store offsets for %zu event(s)", n);
        free(msgs);
    }
    /* Sent now unless its insert says held (an older row of its key is
     * pending: the sweep sends it in order) or inserted nothing (a dead
     * letter recorded and copied before). */
    const PGresult *rows = p != NULL && w->outbox_rows_cmd >= 0
                               ? of_db_pipeline_result(p, (size_t)w->outbox_rows_cmd)
                               : NULL;
    int hint = 0;
    for (size_t i = 0; i < b->n_outbox; i++) {
        of_worker_out *o = &b->outbox[i];
        int h = 0, found = OF_OUTBOX_ABSENT;
        if (o->cmd >= 0 && p != NULL)
            found = of_outbox_result_find(of_db_pipeline_result(p, (size_t)o->cmd), o->m.id, &h);
        else if (o->cmd < 0)
            found = of_outbox_result_find(rows, o->m.id, &hint);
        if (found == OF_OUTBOX_SEND)
            of_outbox_relay_publish(&w->relay, &o->m, 1);
        else if (found == OF_OUTBOX_HELD)
            of_outbox_relay_hold(&w->relay, &o->m);
        else
            of_message_free(&o->m);
    }
    b->n_outbox = 0;
    if (w->isolating && b->hi < b->n) {
        b->lo = b->hi;
        b->hi = b->lo + 1;
        begin_txn(w);
        return;
    }
    finish_batch(w);
}

static void on_committed(of_db *db, of_db_pipeline *p, int status, void *arg)
{
    of_worker *w = arg;
    if (status != OF_OK) {
        pipeline_failed(w, p);
        return;
    }
    settle(w, p);
}

/* True when some event of [lo, hi) needs the database: to be applied,
 * dead-lettered, or checked against the inbox. */
static bool needs_db(const of_worker_batch *b)
{
    for (size_t i = b->lo; i < b->hi; i++)
        if (b->items[i].state == OF_ITEM_PENDING || b->items[i].state == OF_ITEM_DEAD)
            return true;
    return false;
}

static int add_dead_letter(of_worker *w, of_worker_item *it, of_db_pipeline *wp)
{
    of_message dlq = {0};
    const char *code = of_item_code(it);
    int rc = of_dlq_build(&dlq, &it->rec, w->h->name, code, it->err.reason);
    if (rc != OF_OK)
        return rc;
    long cmd = (long)wp->n;
    of_dlq_form form = it->dlq_escaped ? OF_DLQ_ESCAPED : OF_DLQ_AS_IS;
    rc = of_dlq_add(wp, &it->rec, &dlq, w->h->name, it->parsed ? it->ev.id : NULL,
                    it->parsed ? it->ev.type : NULL, code, it->err.reason, form);
    /* Published after commit only when the statement inserted the outbox row,
     * i.e. this record was not dead-lettered before. */
    if (rc == OF_OK)
        rc = keep_for_publish(&w->batch, &dlq, cmd);
    of_message_free(&dlq);
    return rc;
}

static void on_loaded(of_db *db, of_db_pipeline *p, int status, void *arg)
{
    of_worker *w = arg;
    of_worker_batch *b = &w->batch;
    of_db_pipeline *wp = &w->wp;
    const PGresult *seen, *on_record;
    int rc = OF_OK;

    if (status != OF_OK) {
        pipeline_failed(w, p);
        return;
    }
    seen = of_db_pipeline_result(p, 1);
    on_record = b->applied_load >= 0 ? of_db_pipeline_result(p, (size_t)b->applied_load) : NULL;
    for (size_t i = b->lo; i < b->hi; i++) {
        of_worker_item *it = &b->items[i];
        if (it->state != OF_ITEM_PENDING)
            continue;
        if (of_inbox_result_has(seen, it->ev.id)) {
            it->state = OF_ITEM_DUPLICATE;
        } else if (of_inbox_result_has(on_record, it->ev.id)) {
            it->state = OF_ITEM_DUPLICATE;
            it->on_record = true;
        }
    }
    of_db_pipeline_reset(wp);
    wp->session = of_db_session(&w->db);
    for (size_t i = b->lo; i < b->hi; i++) {
        if (b->items[i].state == OF_ITEM_PENDING) {
            rc = of_apply_run(w, b, p, wp);
            break;
        }
    }
    if (rc != OF_OK) {
        char why[400];
        if (b->fault >= 0)
            snprintf(why, sizeof why, "%s", b->items[b->fault].err.reason);
        else
            snprintf(why, sizeof why, "could not apply the batch: %s", of_strerror(rc));
        txn_failed(w, rc, NULL, why);
        return;
    }
    for (size_t i = b->lo; rc == OF_OK && i < b->hi; i++) {
        of_worker_item *it = &b->items[i];
        if (it->state == OF_ITEM_DONE && !it->settled)
            rc = of_inbox_rows_add(&w->inbox_rows, w->h->name, it->ev.id, it->ev.type,
                                   it->rec.topic, it->rec.partition, it->rec.offset);
        else if (it->state == OF_ITEM_DEAD)
            rc = add_dead_letter(w, it, wp);
    }
    w->outbox_rows_cmd = w->outbox_rows.n > 0 ? (long)wp->n : -1;
    if (rc == OF_OK)
        rc = of_db_rows_flush(&w->outbox_rows, wp);
    if (rc == OF_OK)
        rc = of_db_rows_flush(&w->inbox_rows, wp);
    if (rc == OF_OK)
        rc = of_db_pipeline_add_sql(wp, "commit", 0, NULL);
    if (rc == OF_OK)
        rc = of_db_submit(&w->db, wp, on_committed, w);
    if (rc != OF_OK)
        txn_failed(w, rc, NULL, "could not build the transaction");
}

static void begin_txn(of_worker *w)
{
    of_worker_batch *b = &w->batch;
    of_db_pipeline *lp = &w->lp;
    const char **ids;
    size_t n_ids = 0;
    int rc;

    of_db_pipeline_reset(lp);
    of_db_pipeline_reset(&w->wp);
    of_apply_rows_clear(w);
    if (!w->isolating && !needs_db(b)) {
        /* Only duplicates and events that cause nothing: no transaction. */
        settle(w, NULL);
        return;
    }
    b->applied.n = 0;
    b->fault = -1;
    b->entity_load = -1;
    ids = calloc(b->hi - b->lo + 1, sizeof *ids);
    if (ids == NULL) {
        recover(w, FAIL_TRANSIENT, NULL, "out of memory");
        return;
    }
    for (size_t i = b->lo; i < b->hi; i++)
        if (b->items[i].state == OF_ITEM_PENDING)
            ids[n_ids++] = b->items[i].ev.id;
    rc = of_db_pipeline_add_sql(lp, "begin", 0, NULL);
    if (rc == OF_OK)
        rc = of_inbox_add_check(lp, w->h->name, ids, n_ids);
    b->applied_load = -1;
    if (rc == OF_OK && n_ids > 0 && w->h->applied_stmt != NULL) {
        b->applied_load = (long)lp->n;
        rc = of_db_pipeline_add_list(lp, w->h->applied_stmt, ids, n_ids, NULL);
    }
    free(ids);
    if (rc == OF_OK && n_ids > 0)
        rc = of_apply_load(w, b, lp);
    if (rc == OF_OK)
        rc = of_db_submit(&w->db, lp, on_loaded, w);
    if (rc != OF_OK) {
        /* Nothing was sent: no transaction to end. */
        char why[128];
        snprintf(why, sizeof why, "could not build the load pipeline: %s", of_strerror(rc));
        recover(w, of_batch_classify(rc, NULL), NULL, why);
    }
}
