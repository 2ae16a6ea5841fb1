/* batch.c: one polled batch through its transactions: load, apply, commit, offsets.
 *
 * Every record ends in one of three ways: its effect committed, recorded as
 * a no-op (duplicate, ignored, rejected), or dead-lettered. A batch is run
 * as a load pipeline (inbox, permanent-record and entity loads for all its
 * events) and a write pipeline (the machine's and the handler's row sets,
 * the inbox rows, the dead letters, the outbox rows, commit); after the
 * commit its offsets are stored and its events published. What happens when
 * a transaction fails (retry, isolation, dead letters) is batch_fail.c's. */
#include "worker_internal.h"

#include "orderflow/dlq.h"
#include "orderflow/failpoint.h"
#include "orderflow/inbox.h"
#include "orderflow/log.h"
#include "orderflow/uuid.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

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

/* The ce_ids of the parsed events of [lo, hi) that are UUIDs (as outbox ids
 * are), as an SQL array literal. */
static char *consumed_ids(const of_worker_batch *b)
{
    const char **ids = calloc(b->hi - b->lo + 1, sizeof *ids);
    size_t n = 0;
    char *array;
    if (ids == NULL)
        return NULL;
    for (size_t i = b->lo; i < b->hi; i++) {
        if (b->items[i].parsed && of_uuid_valid(b->items[i].ev.id))
            ids[n++] = b->items[i].ev.id;
    }
    array = of_db_text_array(ids, n);
    free(ids);
    return array;
}

static of_log_ctx item_ctx(const of_worker_item *it)
{
    of_log_ctx ctx = {NULL, NULL, it->rec.topic, it->rec.partition, it->rec.offset, NULL};
    if (it->trace_id[0] != '\0')
        ctx.trace_id = it->trace_id;
    if (it->parsed) {
        ctx.ce_id = it->ev.id;
        if (ctx.trace_id == NULL && it->ev.has_trace)
            ctx.trace_id = it->ev.trace.trace_id;
        if (it->ev.has_subject)
            ctx.subject = it->ev.subject;
    }
    return ctx;
}

/* Batch bookkeeping. */

void of_batch_free_outbox(of_worker_batch *b)
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
        if (it->msg != NULL)
            rd_kafka_message_destroy(it->msg);
        if (it->own != NULL)
            of_message_free(it->own);
        free(it->own);
    }
    free(b->items);
    of_batch_free_outbox(b);
    free(b->outbox);
    free(b->applied.v);
    free(b->entities);
    memset(b, 0, sizeof *b);
}

void of_batch_finish(of_worker *w)
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
    of_batch_finish(w);
}

bool of_batch_waiting(const of_worker *w)
{
    return uv_is_active((const uv_handle_t *)&w->retry_timer);
}

/* The batch's items are ready: run them from the first. */
static void run_items(of_worker *w)
{
    of_worker_batch *b = &w->batch;
    b->lo = 0;
    b->hi = b->n;
    w->busy = true;
    /* A batch that runs long (a slow or absent database) pauses fetching and
     * keeps serving the group meanwhile (kafka.h). */
    of_consumer_set_busy(&w->consumer, true);
    w->attempts = 0;
    w->progress_at = uv_now(w->loop);
    w->n_batches++;
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
    run_items(w);
    w->n_events += n;
    of_obs_polled(w);
    of_batch_begin_txn(w);
}

void of_batch_start_replay(of_worker *w, of_worker_item *items, size_t n)
{
    of_worker_batch *b = &w->batch;
    memset(b, 0, sizeof *b);
    b->w = w;
    b->fault = -1;
    b->items = items;
    b->n = n;
    b->replay = true;
    for (size_t i = 0; i < n; i++)
        of_apply_classify(w, &items[i]);
    run_items(w);
    of_batch_begin_txn(w);
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
        if (msgs != NULL && it->msg != NULL)
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
        case OF_ITEM_PARKED:
            of_log_write(OF_LOG_INFO, &ctx, "event parked: %s: %s", it->dlq_code, it->err.reason);
            break;
        case OF_ITEM_PENDING:
            of_log_write(OF_LOG_ERROR, &ctx, "event left pending by the handler");
            break;
        }
    }
    if (p != NULL)
        of_park_committed(w, p);
    if (p != NULL)
        of_failpoint_crash("crash-after-commit");
    /* Offsets only now: the transaction holding the effects is durable. */
    if (msgs != NULL && n > 0 && of_consumer_store(&w->consumer, msgs, n) != 0)
        of_log_warn("could not store offsets for %zu event(s)", n);
    free(msgs);
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
            of_outbox_relay_publish(&w->relay, &o->m, 1, b->ticket);
        else if (found == OF_OUTBOX_HELD)
            of_outbox_relay_hold(&w->relay, &o->m);
        else
            of_message_free(&o->m);
    }
    b->n_outbox = 0;
    if (w->isolating && b->hi < b->n) {
        b->lo = b->hi;
        b->hi = b->lo + 1;
        of_batch_begin_txn(w);
        return;
    }
    of_batch_finish(w);
}

static void on_committed(of_db *db, of_db_pipeline *p, int status, void *arg)
{
    of_worker *w = arg;
    if (status != OF_OK) {
        of_batch_pipeline_failed(w, p);
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
        of_batch_pipeline_failed(w, p);
        return;
    }
    seen = of_db_pipeline_result(p, (size_t)b->inbox_load);
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
    of_park_read(w, p);
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
        of_batch_txn_failed(w, rc, NULL, why);
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
    if (rc == OF_OK)
        rc = of_park_write(w, wp);
    w->outbox_rows_cmd = w->outbox_rows.n > 0 ? (long)wp->n : -1;
    if (rc == OF_OK && w->outbox_rows.n > 0) {
        /* The rows of the events this transaction consumed are on Kafka:
         * unmarked, they hold up nothing (OF_OUTBOX_HOLD_IF). Older pending
         * rows of their keys still do until their own marks come. */
        char *consumed = consumed_ids(b);
        rc = consumed != NULL ? of_db_rows_flush_with(&w->outbox_rows, wp, true, consumed)
                              : OF_ENOMEM;
        free(consumed);
    }
    if (rc == OF_OK)
        rc = of_db_rows_flush(&w->inbox_rows, wp);
    if (rc == OF_OK)
        rc = of_db_pipeline_add_sql(wp, "commit", 0, NULL);
    w->batch.ticket = of_outbox_relay_ticket(&w->relay);
    if (rc == OF_OK)
        rc = of_db_submit(&w->db, wp, on_committed, w);
    if (rc != OF_OK)
        of_batch_txn_failed(w, rc, NULL, "could not build the transaction");
}

void of_batch_begin_txn(of_worker *w)
{
    of_worker_batch *b = &w->batch;
    of_db_pipeline *lp = &w->lp;
    const char **ids;
    size_t n_ids = 0;
    int rc;

    of_db_pipeline_reset(lp);
    of_db_pipeline_reset(&w->wp);
    of_apply_rows_clear(w);
    if (!w->isolating && !b->replay && !needs_db(b)) {
        /* Only duplicates and events that cause nothing: no transaction. */
        settle(w, NULL);
        return;
    }
    b->applied.n = 0;
    b->fault = -1;
    b->entity_load = -1;
    b->park_load = -1;
    b->park_done = -1;
    b->n_parked = 0;
    ids = calloc(b->hi - b->lo + 1, sizeof *ids);
    if (ids == NULL) {
        of_batch_recover(w, FAIL_TRANSIENT, NULL, "out of memory");
        return;
    }
    for (size_t i = b->lo; i < b->hi; i++)
        if (b->items[i].state == OF_ITEM_PENDING)
            ids[n_ids++] = b->items[i].ev.id;
    rc = of_db_pipeline_add_sql(lp, "begin", 0, NULL);
    /* Parked keys first: one lock order (parked_keys, then the machine's
     * rows) for batches and replays, and the inbox is read after a replay
     * of a key this batch waited for has committed. A replay takes its key's
     * lock whatever its events' states. */
    if (rc == OF_OK && (n_ids > 0 || b->replay))
        rc = of_park_load(w, lp);
    b->inbox_load = (long)lp->n;
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
        of_batch_recover(w, of_batch_classify(rc, NULL), NULL, why);
    }
}
