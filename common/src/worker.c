/* worker.c: the event loop, batch transactions, retries and shutdown shared by every worker. */
#include "orderflow/worker.h"

#include "orderflow/dlq.h"
#include "orderflow/inbox.h"
#include "orderflow/log.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#define RETRY_MIN_MS 100

static void try_next_batch(of_worker *w);
static void begin_txn(of_worker *w);
static void on_kick(uv_idle_t *h);
static void shutdown_continue(of_worker *w);

/* Observability: metrics and the HTTP endpoint (at the end of the file). */
static int obs_init(of_worker *w);
static int obs_kafka_conf(of_worker *w, rd_kafka_conf_t *conf, char *errstr, size_t size);
static void obs_start(of_worker *w);
static void obs_polled(of_worker *w);
static void obs_committed(of_worker *w, const of_db_pipeline *wp);
static void obs_retry(of_worker *w);
static void obs_close(of_worker *w);
static void obs_free(of_worker *w);

const char *of_worker_topic(of_worker *w, const char *topic, char *buf, size_t size)
{
    snprintf(buf, size, "%s%s", w->cfg.topic_prefix ? w->cfg.topic_prefix : "", topic);
    return buf;
}

/* Keeps m (taken over) to publish after commit, conditionally on command cmd. */
static int keep_for_publish(of_worker_batch *b, of_message *m, long cmd)
{
    if (b->n_outbox == b->cap_outbox) {
        size_t cap = b->cap_outbox ? b->cap_outbox * 2 : 64;
        of_worker_out *o = realloc(b->outbox, cap * sizeof *o);
        if (o == NULL)
            return -1;
        b->outbox = o;
        b->cap_outbox = cap;
    }
    b->outbox[b->n_outbox].m = *m;
    b->outbox[b->n_outbox].cmd = cmd;
    b->n_outbox++;
    memset(m, 0, sizeof *m);
    return 0;
}

int of_worker_emit(of_worker_batch *b, of_db_pipeline *wp, of_message *m)
{
    if (of_outbox_add(wp, m) != 0)
        return -1;
    return keep_for_publish(b, m, -1);
}

static of_log_ctx item_ctx(const of_worker_item *it)
{
    of_log_ctx ctx = {NULL, NULL, it->rec.topic, it->rec.partition, it->rec.offset};
    if (it->parsed) {
        ctx.ce_id = it->ev.id;
        if (it->ev.has_subject)
            ctx.order_id = it->ev.subject;
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
    b->items = NULL;
    b->n = b->lo = b->hi = 0;
    free_outbox(b);
    free(b->outbox);
    b->outbox = NULL;
    b->cap_outbox = 0;
}

static void finish_batch(of_worker *w)
{
    free_items(w);
    w->busy = false;
    w->isolating = false;
    of_db_pipeline_reset(&w->lp);
    of_db_pipeline_reset(&w->wp);
    if (w->stopping) {
        shutdown_continue(w);
        return;
    }
    uv_idle_start(&w->kick, on_kick);
}

/* Fills the record view and parses/decodes one message. */
static void prepare_item(of_worker *w, of_worker_item *it, rd_kafka_message_t *m)
{
    rd_kafka_headers_t *hdrs = NULL;
    it->msg = m;
    it->rec.topic = rd_kafka_topic_name(m->rkt);
    it->rec.partition = m->partition;
    it->rec.offset = m->offset;
    it->rec.key = m->key;
    it->rec.key_len = m->key_len;
    it->rec.value = m->payload;
    it->rec.value_len = m->len;
    if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR && hdrs != NULL) {
        size_t cnt = rd_kafka_header_cnt(hdrs);
        it->headers = calloc(cnt ? cnt : 1, sizeof *it->headers);
        for (size_t i = 0; it->headers != NULL && i < cnt; i++) {
            const char *name;
            const void *val;
            size_t size;
            if (rd_kafka_header_get_all(hdrs, i, &name, &val, &size) != RD_KAFKA_RESP_ERR_NO_ERROR)
                break;
            it->headers[it->rec.n_headers].name = name;
            it->headers[it->rec.n_headers].value = val;
            it->headers[it->rec.n_headers].len = size;
            it->rec.n_headers++;
        }
        it->rec.headers = it->headers;
    }
    if (of_event_parse(&it->rec, &it->ev, &it->err) != 0) {
        it->state = OF_ITEM_DEAD;
    } else {
        it->parsed = true;
        it->state = OF_ITEM_PENDING;
        if (w->h->decode(w->h->ctx, it, &it->err) != 0)
            it->state = OF_ITEM_DEAD;
        else
            it->decoded = true;
    }
    it->initial = it->state;
}

static void start_batch(of_worker *w, rd_kafka_message_t **msgs, size_t n)
{
    of_worker_batch *b = &w->batch;
    memset(b, 0, sizeof *b);
    b->w = w;
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
        prepare_item(w, &b->items[i], msgs[i]);
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
    w->n_batches++;
    w->n_events += n;
    obs_polled(w);
    begin_txn(w);
}

static void on_kick(uv_idle_t *h)
{
    of_worker *w = h->data;
    uv_idle_stop(h);
    try_next_batch(w);
}

static void try_next_batch(of_worker *w)
{
    rd_kafka_message_t **msgs;
    size_t n;
    /* Polling goes on while Postgres is away: it serves rebalances, and a
     * batch taken meanwhile waits in the connection's queue. */
    if (w->busy || w->stopping)
        return;
    msgs = calloc((size_t)w->cfg.batch_size, sizeof *msgs);
    if (msgs == NULL)
        return;
    n = of_consumer_poll(&w->consumer, msgs, (size_t)w->cfg.batch_size);
    if (n > 0)
        start_batch(w, msgs, n);
    free(msgs);
}

/* Transactions. */

static void restore_range(of_worker *w)
{
    of_worker_batch *b = &w->batch;
    for (size_t i = b->lo; i < b->hi; i++) {
        b->items[i].state = b->items[i].initial;
        b->items[i].outcome = NULL;
    }
    free_outbox(b);
}

static void on_retry_timer(uv_timer_t *t)
{
    of_worker *w = t->data;
    if (w->stopping) {
        /* Abandon the batch: nothing was acknowledged, so it is redelivered. */
        finish_batch(w);
        return;
    }
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
    obs_retry(w);
    of_log_warn("transaction for %zu event(s) failed, retrying in %" PRIu64 " ms: %s",
                b->hi - b->lo, w->retry_ms, why);
    restore_range(w);
    uv_timer_start(&w->retry_timer, on_retry_timer, w->retry_ms, 0);
    w->retry_ms =
        w->retry_ms * 2 > (uint64_t)w->cfg.retry_max ? (uint64_t)w->cfg.retry_max : w->retry_ms * 2;
}

/* After a permanent failure: isolate events, or dead-letter the one at fault. */
static void handle_permanent(of_worker *w, const of_db_pipeline *p)
{
    of_worker_batch *b = &w->batch;
    restore_range(w);
    if (b->hi - b->lo > 1) {
        of_log_warn("transaction for %zu events failed (%s: %s); retrying them one by one",
                    b->hi - b->lo, p->sqlstate, p->error);
        w->isolating = true;
        b->hi = b->lo + 1;
        begin_txn(w);
        return;
    }
    of_worker_item *it = &b->items[b->lo];
    if (it->state == OF_ITEM_DEAD) {
        /* Even the dead letter could not be written: that is not the event's
         * fault, so keep retrying rather than lose it. */
        schedule_retry(w, p->error);
        return;
    }
    of_event_error_set(
        &it->err, OF_EVENT_ERR_INVALID_ATTRIBUTE,
        "could not apply event: %s (SQLSTATE %s, statement %s)", p->error, p->sqlstate,
        p->failed_index >= 0 && (size_t)p->failed_index < p->n
            ? (p->cmds[p->failed_index].stmt ? p->cmds[p->failed_index].stmt : "ad hoc")
            : "?");
    it->dlq_code = "PROCESSING_FAILED";
    it->state = it->initial = OF_ITEM_DEAD;
    begin_txn(w);
}

static void on_rolled_back(of_db *db, of_db_pipeline *p, int status, void *arg)
{
    of_worker *w = arg;
    /* The failed pipeline's status and error were copied into wp/lp before. */
    of_db_pipeline *failed = w->wp.status != OF_DB_OK ? &w->wp : &w->lp;
    of_db_pipeline_free(p);
    free(p);
    if (failed->status == OF_DB_ESQL && !of_db_sqlstate_transient(failed->sqlstate))
        handle_permanent(w, failed);
    else
        schedule_retry(w, failed->error);
}

static void on_txn_failed(of_worker *w, of_db_pipeline *failed)
{
    /* A failed pipeline leaves the transaction aborted: roll it back before
     * the connection is used again. A lost connection took it with it. */
    if (failed->status != OF_DB_ECONN && of_db_ready(&w->db)) {
        of_db_pipeline *rb = malloc(sizeof *rb);
        if (rb != NULL) {
            of_db_pipeline_init(rb);
            if (of_db_pipeline_add_sql(rb, "rollback", 0, NULL) == 0 &&
                of_db_submit(&w->db, rb, on_rolled_back, w) == 0)
                return;
            of_db_pipeline_free(rb);
            free(rb);
        }
    }
    if (failed->status == OF_DB_ESQL && !of_db_sqlstate_transient(failed->sqlstate))
        handle_permanent(w, failed);
    else
        schedule_retry(w, failed->error);
}

static void on_committed(of_db *db, of_db_pipeline *p, int status, void *arg)
{
    of_worker *w = arg;
    of_worker_batch *b = &w->batch;
    rd_kafka_message_t **msgs;
    size_t n = 0;

    if (status != OF_DB_OK) {
        on_txn_failed(w, p);
        return;
    }
    w->retry_ms = RETRY_MIN_MS;
    obs_committed(w, p);
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
            of_log_write(OF_LOG_INFO, &ctx, "duplicate event skipped");
            break;
        case OF_ITEM_DEAD:
            w->n_dead++;
            of_log_write(OF_LOG_WARN, &ctx, "event dead-lettered: %s: %s",
                         it->dlq_code ? it->dlq_code : of_event_code_name(it->err.code),
                         it->err.reason);
            break;
        case OF_ITEM_PENDING:
            of_log_write(OF_LOG_ERROR, &ctx, "event left pending by the handler");
            break;
        }
    }
    /* Offsets only now: the transaction holding the effects is durable. */
    if (msgs != NULL) {
        if (of_consumer_store(&w->consumer, msgs, n) != 0)
            of_log_warn("could not store offsets for %zu event(s)", n);
        free(msgs);
    }
    for (size_t i = 0; i < b->n_outbox; i++) {
        of_worker_out *o = &b->outbox[i];
        const PGresult *r = o->cmd >= 0 ? of_db_pipeline_result(p, (size_t)o->cmd) : NULL;
        if (o->cmd < 0 || (r != NULL && PQntuples(r) > 0))
            of_outbox_relay_publish(&w->relay, &o->m, 1);
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

static int add_dead_letter(of_worker *w, of_worker_item *it, of_db_pipeline *wp)
{
    of_message dlq = {0};
    const char *code = it->dlq_code ? it->dlq_code : of_event_code_name(it->err.code);
    int rc = of_dlq_build(&dlq, &it->rec, w->h->name, code, it->err.reason);
    if (rc != 0)
        return rc;
    long cmd = (long)wp->n;
    rc = of_dlq_add(wp, &it->rec, &dlq, w->h->name, it->parsed ? it->ev.id : NULL,
                    it->parsed ? it->ev.type : NULL, code, it->err.reason);
    /* Published after commit only when the statement inserted the outbox row,
     * i.e. this record was not dead-lettered before. */
    if (rc == 0)
        rc = keep_for_publish(&w->batch, &dlq, cmd);
    of_message_free(&dlq);
    return rc;
}

static void on_loaded(of_db *db, of_db_pipeline *p, int status, void *arg)
{
    of_worker *w = arg;
    of_worker_batch *b = &w->batch;
    of_db_pipeline *wp = &w->wp;
    const PGresult *seen;
    int rc = 0;

    if (status != OF_DB_OK) {
        on_txn_failed(w, p);
        return;
    }
    seen = of_db_pipeline_result(p, 1);
    for (size_t i = b->lo; i < b->hi; i++) {
        of_worker_item *it = &b->items[i];
        if (it->state == OF_ITEM_PENDING && of_inbox_result_has(seen, it->ev.id))
            it->state = OF_ITEM_DUPLICATE;
    }
    of_db_pipeline_reset(wp);
    wp->session = of_db_session(&w->db);
    rc = w->h->apply(w->h->ctx, b, p, 2, wp);
    for (size_t i = b->lo; rc == 0 && i < b->hi; i++) {
        of_worker_item *it = &b->items[i];
        if (it->state == OF_ITEM_DONE)
            rc = of_inbox_add_record(wp, w->h->name, it->ev.id, it->ev.type, it->rec.topic,
                                     it->rec.partition, it->rec.offset);
        else if (it->state == OF_ITEM_DEAD)
            rc = add_dead_letter(w, it, wp);
    }
    if (rc == 0)
        rc = of_db_pipeline_add_sql(wp, "commit", 0, NULL);
    if (rc == 0)
        rc = of_db_submit(&w->db, wp, on_committed, w);
    if (rc != 0) {
        snprintf(wp->error, sizeof wp->error, "could not build the transaction (error %d)", rc);
        wp->status = OF_DB_ENOMEM;
        on_txn_failed(w, wp);
    }
}

static void begin_txn(of_worker *w)
{
    of_worker_batch *b = &w->batch;
    of_db_pipeline *lp = &w->lp;
    const char **ids;
    size_t n_ids = 0;
    bool any_pending = false;
    int rc;

    of_db_pipeline_reset(lp);
    of_db_pipeline_reset(&w->wp);
    ids = calloc(b->hi - b->lo + 1, sizeof *ids);
    if (ids == NULL) {
        lp->status = OF_DB_ENOMEM;
        snprintf(lp->error, sizeof lp->error, "out of memory");
        schedule_retry(w, lp->error);
        return;
    }
    for (size_t i = b->lo; i < b->hi; i++) {
        if (b->items[i].state == OF_ITEM_PENDING) {
            ids[n_ids++] = b->items[i].ev.id;
            any_pending = true;
        }
    }
    rc = of_db_pipeline_add_sql(lp, "begin", 0, NULL);
    if (rc == 0)
        rc = of_inbox_add_check(lp, w->h->name, ids, n_ids);
    free(ids);
    if (rc == 0 && any_pending)
        rc = w->h->load(w->h->ctx, b, lp);
    if (rc == 0)
        rc = of_db_submit(&w->db, lp, on_loaded, w);
    if (rc != 0) {
        lp->status = OF_DB_ENOMEM;
        snprintf(lp->error, sizeof lp->error, "could not build the load pipeline (error %d)", rc);
        schedule_retry(w, lp->error);
    }
}

/* Loop plumbing. */

static void on_consumer_wakeup(of_consumer *c, void *arg)
{
    try_next_batch(arg);
}

static void on_db_state(of_db *db, of_db_state state, void *arg)
{
    of_worker *w = arg;
    if (db == &w->db && state == OF_DB_READY && !w->stopping)
        uv_idle_start(&w->kick, on_kick);
}

static void on_delivery(of_producer *p, void *opaque, rd_kafka_resp_err_t err, void *arg)
{
    of_worker *w = arg;
    of_outbox_relay_delivered(&w->relay, opaque, err);
}

/* Shutdown: stop fetching, let the batch in progress finish, leave the
 * group (committing stored offsets), let the relay publish and mark what
 * committed, then close producer, connections and handles. */

static void close_handle(of_worker *w, uv_handle_t *h);

static void on_handle_closed(uv_handle_t *h)
{
    of_worker *w = h->loop->data;
    w->closing--;
}

static void close_handle(of_worker *w, uv_handle_t *h)
{
    if (h->loop == NULL || uv_is_closing(h))
        return;
    w->closing++;
    uv_close(h, on_handle_closed);
}

static void close_base_handles(of_worker *w)
{
    close_handle(w, (uv_handle_t *)&w->sigterm);
    close_handle(w, (uv_handle_t *)&w->sigint);
    close_handle(w, (uv_handle_t *)&w->retry_timer);
    close_handle(w, (uv_handle_t *)&w->shutdown_timer);
    close_handle(w, (uv_handle_t *)&w->kick);
    obs_close(w);
}

static void maybe_close_base(of_worker *w)
{
    if (w->dbs_closed == 2 && w->producer_closed)
        close_base_handles(w);
}

static void on_db_closed(of_db *db)
{
    of_worker *w = db->loop->data;
    w->dbs_closed++;
    maybe_close_base(w);
}

static void close_db(of_worker *w, of_db *db)
{
    if (db->state != OF_DB_CLOSING)
        of_db_close(db, on_db_closed);
}

static void on_producer_closed(of_producer *p)
{
    of_worker *w = p->arg;
    of_outbox_relay_free(&w->relay);
    w->producer_closed = true;
    close_db(w, &w->db);
    close_db(w, &w->aux);
    maybe_close_base(w);
}

/* Polls until the relay has published and marked what committed (or the
 * connection it marks with is gone, or the grace period runs short). */
static void drain_relay(uv_timer_t *t)
{
    of_worker *w = t->data;
    if (!of_outbox_relay_idle(&w->relay) && of_db_ready(&w->aux) &&
        uv_now(w->loop) < w->drain_deadline)
        return;
    uv_timer_stop(t);
    of_outbox_relay_stop(&w->relay);
    of_producer_close(&w->producer, 2000, on_producer_closed);
}

static void on_consumer_closed(of_consumer *c)
{
    of_worker *w = c->arg;
    of_log_info("left the consumer group; draining the outbox relay");
    /* The retry timer is free now: reuse it to poll the relay. */
    uv_timer_stop(&w->retry_timer);
    uv_timer_start(&w->retry_timer, drain_relay, 0, 20);
}

static void shutdown_continue(of_worker *w)
{
    of_log_info("no batch in progress; closing the consumer");
    of_consumer_close(&w->consumer, on_consumer_closed);
}

static void on_shutdown_timeout(uv_timer_t *t)
{
    of_worker *w = t->data;
    of_log_error("grace period of %" PRId64 " ms exceeded; exiting without a clean drain",
                 w->cfg.grace_period);
    /* Nothing unacknowledged is lost: uncommitted events are redelivered and
     * committed-but-unpublished outbox rows are swept on the next start. */
    _exit(EX_TEMPFAIL);
}

static void begin_shutdown(of_worker *w, int signum)
{
    if (w->stopping) {
        of_log_warn("second signal %d; exiting now", signum);
        _exit(EX_TEMPFAIL);
    }
    w->stopping = true;
    of_log_info("signal %d: shutting down (grace period %" PRId64 " ms)", signum,
                w->cfg.grace_period);
    if (w->h->stop != NULL)
        w->h->stop(w->h->ctx, w);
    uv_idle_stop(&w->kick);
    uv_timer_start(&w->shutdown_timer, on_shutdown_timeout, (uint64_t)w->cfg.grace_period, 0);
    /* Leave 3 s of the grace period for the producer and the connections. */
    w->drain_deadline = uv_now(w->loop) + (uint64_t)w->cfg.grace_period -
                        ((uint64_t)w->cfg.grace_period > 6000 ? 3000 : 0);
    if (w->busy && !of_db_ready(&w->db)) {
        /* The batch cannot finish while Postgres is away; closing the
         * connection cancels it, and it is redelivered after the restart. */
        of_log_warn("postgres is unavailable; abandoning the batch in progress");
        close_db(w, &w->db);
    } else if (!w->busy) {
        shutdown_continue(w);
    } else if (uv_is_active((uv_handle_t *)&w->retry_timer)) {
        /* Waiting to retry: give up the batch now (it was not acknowledged). */
        uv_timer_stop(&w->retry_timer);
        finish_batch(w);
    }
}

static void on_signal(uv_signal_t *s, int signum)
{
    begin_shutdown(s->data, signum);
}

static int build_statements(of_worker *w, size_t *n)
{
    const of_db_stmt *groups[] = {of_outbox_stmts, of_inbox_stmts, of_dlq_stmts, w->h->stmts};
    size_t sizes[] = {of_outbox_n_stmts, of_inbox_n_stmts, of_dlq_n_stmts, w->h->n_stmts};
    size_t total = 0, k = 0;
    for (size_t g = 0; g < 4; g++)
        total += sizes[g];
    w->stmts = calloc(total, sizeof *w->stmts);
    if (w->stmts == NULL)
        return -1;
    for (size_t g = 0; g < 4; g++)
        for (size_t i = 0; i < sizes[g]; i++)
            w->stmts[k++] = groups[g][i];
    *n = total;
    return 0;
}

int of_worker_run(const of_worker_handler *h, of_worker_settings *cfg)
{
    uv_loop_t loop;
    of_worker *w = calloc(1, sizeof *w);
    rd_kafka_conf_t *pconf = NULL, *cconf = NULL;
    const char *topics[8];
    char errstr[512], group[128];
    size_t n_stmts = 0;
    of_log_level level;
    int result = EX_SOFTWARE;

    if (w == NULL)
        return EX_OSERR;
    w->h = h;
    w->cfg = *cfg;
    memset(cfg, 0, sizeof *cfg);
    w->retry_ms = RETRY_MIN_MS;
    w->exit_code = 0;
    of_log_init(h->name);
    if (of_log_level_parse(w->cfg.log_level, &level) == 0)
        of_log_set_level(level);
    snprintf(w->source, sizeof w->source, "orderflow/%s", h->name);
    if (w->cfg.group_id == NULL) {
        snprintf(group, sizeof group, "orderflow-%s", h->name);
        w->cfg.group_id = strdup(group);
    }
    if (h->n_topics > 8 || w->cfg.group_id == NULL)
        goto out_free;
    for (size_t i = 0; i < h->n_topics; i++)
        topics[i] = of_worker_topic(w, h->topics[i], w->topics[i], sizeof w->topics[i]);

    if (uv_loop_init(&loop) != 0)
        goto out_free;
    loop.data = w;
    w->loop = &loop;
    if (obs_init(w) != 0) {
        of_log_error("could not set up metrics");
        goto out_loop;
    }
    if (build_statements(w, &n_stmts) != 0 ||
        of_db_init(&w->db, &loop, w->cfg.database_url, "batch", w->stmts, n_stmts, on_db_state,
                   w) != 0 ||
        of_db_init(&w->aux, &loop, w->cfg.database_url, "relay", of_outbox_stmts, of_outbox_n_stmts,
                   on_db_state, w) != 0) {
        of_log_error("could not set up postgres connections");
        goto out_loop;
    }
    pconf = of_kafka_conf_new(w->cfg.kafka_bootstrap, h->name, errstr, sizeof errstr);
    cconf = of_kafka_conf_new(w->cfg.kafka_bootstrap, h->name, errstr, sizeof errstr);
    if (pconf == NULL || cconf == NULL || obs_kafka_conf(w, cconf, errstr, sizeof errstr) != 0) {
        of_log_error("invalid kafka configuration: %s", errstr);
        result = EX_CONFIG;
        goto out_loop;
    }
    if (of_producer_init(&w->producer, &loop, pconf, on_delivery, w) != 0) {
        pconf = NULL;
        goto out_loop;
    }
    pconf = NULL;
    if (of_outbox_relay_init(&w->relay, &loop, &w->aux, &w->producer,
                             (uint64_t)w->cfg.sweep_interval, (uint64_t)w->cfg.sweep_grace) != 0)
        goto out_loop;
    if (of_consumer_init(&w->consumer, &loop, cconf, w->cfg.group_id, topics, h->n_topics,
                         on_consumer_wakeup, NULL, w) != 0) {
        cconf = NULL;
        goto out_loop;
    }
    cconf = NULL;
    uv_signal_init(&loop, &w->sigterm);
    uv_signal_init(&loop, &w->sigint);
    w->sigterm.data = w->sigint.data = w;
    uv_signal_start(&w->sigterm, on_signal, SIGTERM);
    uv_signal_start(&w->sigint, on_signal, SIGINT);
    uv_timer_init(&loop, &w->retry_timer);
    uv_timer_init(&loop, &w->shutdown_timer);
    w->retry_timer.data = w->shutdown_timer.data = w;
    uv_idle_init(&loop, &w->kick);
    w->kick.data = w;
    if (h->start != NULL && h->start(h->ctx, w) != 0) {
        of_log_error("could not start the worker's handler");
        raise(SIGTERM);
    }
    if (of_db_start(&w->db) != 0 || of_db_start(&w->aux) != 0)
        goto out_loop;
    of_outbox_relay_start(&w->relay);
    obs_start(w);
    of_log_info("started: group \"%s\", %zu topic(s) from \"%s\", batch size %" PRId64,
                w->cfg.group_id, h->n_topics, topics[0], w->cfg.batch_size);

    uv_run(&loop, UV_RUN_DEFAULT);
    result = w->exit_code;
    of_log_info("stopped: %" PRIu64 " batches, %" PRIu64 " events, %" PRIu64 " applied, %" PRIu64
                " duplicates, %" PRIu64 " dead-lettered, %" PRIu64 " retries",
                w->n_batches, w->n_events, w->n_applied, w->n_duplicates, w->n_dead, w->n_retries);
    if (uv_loop_close(&loop) != 0) {
        of_log_error("handles left open at exit");
        result = EX_SOFTWARE;
    }
    goto out_free;
out_loop:
    /* Start-up failed before the loop ran: exit without a drain. */
    if (pconf != NULL)
        rd_kafka_conf_destroy(pconf);
    if (cconf != NULL)
        rd_kafka_conf_destroy(cconf);
    of_log_error("could not start the worker");
    _exit(result);
out_free:
    obs_free(w);
    of_db_pipeline_free(&w->lp);
    of_db_pipeline_free(&w->wp);
    free(w->stmts);
    free(w->cfg.database_url);
    free(w->cfg.kafka_bootstrap);
    free(w->cfg.group_id);
    free(w->cfg.topic_prefix);
    free(w->cfg.log_level);
    free(w->cfg.http_address);
    free(w);
    return result;
}

/* Observability: /healthz, /readyz and /metrics on the worker's loop.
 *
 * The runtime's families are updated where the runtime learns the facts (a
 * batch polled, a transaction committed, a retry scheduled); counters that
 * other modules keep (relay, connections, consumer) are copied in by a
 * collector when /metrics is rendered. Gauges that need Postgres (outbox
 * backlog, handlers' of_worker_gauge_query) are refreshed every
 * STATS_INTERVAL_MS on the relay connection; consumer lag and the group state
 * come from librdkafka's statistics, which the consumer poll delivers. */

#define STATS_INTERVAL_MS    5000
#define KAFKA_STATS_INTERVAL "5000"
#define MAX_GAUGE_QUERIES    8

static const char outbox_stats_sql[] =
    "select count(*), coalesce(extract(epoch from now() - min(created_at)), 0)"
    " from outbox where published_at is null";

/* A gauge set from a query. */
typedef struct gauge_query {
    of_metric *gauge; /* family without labels */
    const char *sql;  /* query: first column of the first row is the value (static) */
} gauge_query;

struct of_worker_obs {
    of_metric *consumed;     /* orderflow_events_consumed_total{topic,type} */
    of_metric *processed;    /* orderflow_events_processed_total{topic,type,outcome} */
    of_metric *dead;         /* orderflow_events_dead_lettered_total{topic,code} */
    of_metric *transitions;  /* orderflow_transitions_total{machine,from,to} */
    of_metric *batch_size;   /* orderflow_batch_size (events per polled batch) */
    of_metric *txn_seconds;  /* orderflow_transaction_duration_seconds */
    of_metric *step_latency; /* orderflow_step_latency_seconds{type} */
    of_metric *retries;      /* orderflow_retries_total */
    of_metric *published;    /* orderflow_outbox_published_total */
    of_metric *failed;       /* orderflow_outbox_failed_total */
    of_metric *swept;        /* orderflow_outbox_swept_total */
    of_metric *backlog;      /* orderflow_outbox_backlog */
    of_metric *oldest;       /* orderflow_outbox_oldest_unpublished_age_seconds */
    of_metric *lag;          /* orderflow_consumer_lag{topic,partition} */
    of_metric *assigned;     /* orderflow_consumer_assigned_partitions */
    of_metric *reconnects;   /* orderflow_db_reconnects_total{connection} */
    of_metric *build_info;   /* orderflow_build_info{version,worker} */
    uv_timer_t stats_timer;  /* runs the SQL gauge queries */
    of_db_pipeline stats;    /* the SQL gauge queries */
    bool stats_in_flight;    /* stats is submitted */
    gauge_query queries[MAX_GAUGE_QUERIES]; /* handlers' gauges, after the outbox query */
    size_t n_queries;                       /* used entries */
    int64_t kafka_stats_ms;                 /* statistics.interval.ms in effect (0: off) */
    uint64_t kafka_stats_at; /* uv_now() at the last statistics, 0 before the first */
    char cgrp_state[32];     /* consumer group state in the last statistics */
};

static const char *const l_topic_type[] = {"topic", "type"};
static const char *const l_processed[] = {"topic", "type", "outcome"};
static const char *const l_dead[] = {"topic", "code"};
static const char *const l_transition[] = {"machine", "from", "to"};
static const char *const l_type[] = {"type"};
static const char *const l_lag[] = {"topic", "partition"};
static const char *const l_connection[] = {"connection"};
static const char *const l_build[] = {"version", "worker"};
static const double batch_bounds[] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000};
static const double txn_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                    0.25,  0.5,    1,     2.5,  5,     10};
static const double latency_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                        2.5,   5,    10,    30,   60,  300,  1800};
#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* The event type as a label value: only types the handler decoded (a small
 * known set), so that bad input cannot create series at will. */
static const char *type_label(const of_worker_item *it)
{
    return it->decoded ? it->ev.type : "invalid";
}

/* The outcome of a committed event as a label value: handlers' outcome
 * words are for the log (some name the new status), so anything but
 * "ignored" and "rejected" counts as "applied". */
static const char *outcome_label(const of_worker_item *it)
{
    if (it->outcome != NULL &&
        (strcmp(it->outcome, "ignored") == 0 || strcmp(it->outcome, "rejected") == 0))
        return it->outcome;
    return "applied";
}

static void obs_polled(of_worker *w)
{
    struct of_worker_obs *o = w->obs;
    of_worker_batch *b = &w->batch;
    of_metric_observe(o->batch_size, NULL, (double)b->n);
    for (size_t i = 0; i < b->n; i++) {
        const of_worker_item *it = &b->items[i];
        of_metric_add(o->consumed, (const char *const[]){it->rec.topic, type_label(it)}, 1);
    }
}

static void obs_retry(of_worker *w)
{
    of_metric_add(w->obs->retries, NULL, 1);
}

/* Counts the transitions a committed write pipeline applied. Each one is an
 * execution_history row with outcome "applied" appended by of_machine_apply()
 * (statement "<machine>_history", parameters as in OF_MACHINE_STMTS: $1
 * execution, $4 step, $5 from, $6 to, $7 outcome); a transition that also
 * starts another execution adds a row with step "Start", which is not a
 * transition of its own. Reading what committed keeps machine.c free of
 * metrics and never counts a transaction that rolled back. */
static void count_transitions(struct of_worker_obs *o, const of_db_pipeline *wp)
{
    static const char suffix[] = "_history";
    const size_t sl = sizeof suffix - 1;
    for (size_t i = 0; i < wp->n; i++) {
        const of_db_cmd *c = &wp->cmds[i];
        size_t len = c->stmt != NULL ? strlen(c->stmt) : 0;
        if (len <= sl || strcmp(c->stmt + len - sl, suffix) != 0 || c->nparams != 12)
            continue;
        const char *exec = c->values[0], *step = c->values[3], *from = c->values[4];
        const char *to = c->values[5], *outcome = c->values[6];
        if (exec == NULL || exec[0] == '\0' || step == NULL || strcmp(step, "Start") == 0 ||
            to == NULL || outcome == NULL || strcmp(outcome, "applied") != 0)
            continue;
        of_metric_add(o->transitions,
                      (const char *const[]){exec, from != NULL && from[0] ? from : "none", to}, 1);
    }
}

static void obs_committed(of_worker *w, const of_db_pipeline *wp)
{
    struct of_worker_obs *o = w->obs;
    of_worker_batch *b = &w->batch;
    struct timespec ts;
    int64_t now_ms = 0, at_ms;

    if (clock_gettime(CLOCK_REALTIME, &ts) == 0)
        now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    of_metric_observe(o->txn_seconds, NULL, (double)(w->lp.elapsed_ns + wp->elapsed_ns) / 1e9);
    for (size_t i = b->lo; i < b->hi; i++) {
        const of_worker_item *it = &b->items[i];
        const char *topic = it->rec.topic;
        switch (it->state) {
        case OF_ITEM_DONE:
            of_metric_add(o->processed,
                          (const char *const[]){topic, type_label(it), outcome_label(it)}, 1);
            if (it->ev.has_time && now_ms > 0 && of_event_time_parse(it->ev.time, &at_ms) == 0)
                of_metric_observe(o->step_latency, (const char *const[]){type_label(it)},
                                  now_ms > at_ms ? (double)(now_ms - at_ms) / 1000.0 : 0.0);
            break;
        case OF_ITEM_DUPLICATE:
            of_metric_add(o->processed, (const char *const[]){topic, type_label(it), "duplicate"},
                          1);
            break;
        case OF_ITEM_DEAD:
            of_metric_add(o->dead,
                          (const char *const[]){topic, it->dlq_code
                                                           ? it->dlq_code
                                                           : of_event_code_name(it->err.code)},
                          1);
            break;
        case OF_ITEM_PENDING:
            break;
        }
    }
    count_transitions(o, wp);
}

/* Copies counters other modules keep, at every render. */
static void collect(void *arg, of_metrics *m)
{
    of_worker *w = arg;
    struct of_worker_obs *o = w->obs;
    of_metric_set(o->published, NULL, (double)w->relay.published_total);
    of_metric_set(o->failed, NULL, (double)w->relay.failed_total);
    of_metric_set(o->swept, NULL, (double)w->relay.swept_total);
    /* Literal names: during shutdown of_db_close() may have released db->name. */
    of_metric_set(o->reconnects, (const char *const[]){"batch"}, (double)w->db.reconnects);
    of_metric_set(o->reconnects, (const char *const[]){"relay"}, (double)w->aux.reconnects);
    of_metric_set(o->assigned, NULL, (double)w->consumer.assigned_partitions);
}

/* librdkafka statistics (every statistics.interval.ms, served by the
 * consumer poll on the loop): the group state for /readyz and the lag of
 * each partition this consumer fetches. */
static int on_kafka_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    /* of_consumer_init() makes the consumer the handle's opaque; its arg is the worker. */
    of_consumer *c = opaque;
    of_worker *w = c->arg;
    struct of_worker_obs *o = w->obs;
    cJSON *root = cJSON_ParseWithLength(json, len);
    const cJSON *state, *topic, *part;

    if (root == NULL)
        return 0; /* librdkafka frees json */
    o->kafka_stats_at = uv_now(w->loop);
    state =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "cgrp"), "state");
    snprintf(o->cgrp_state, sizeof o->cgrp_state, "%s",
             cJSON_IsString(state) ? state->valuestring : "unknown");
    /* Rebuilt from each snapshot, so that revoked partitions disappear. */
    of_metric_clear(o->lag);
    cJSON_ArrayForEach(topic, cJSON_GetObjectItemCaseSensitive(root, "topics"))
    {
        cJSON_ArrayForEach(part, cJSON_GetObjectItemCaseSensitive(topic, "partitions"))
        {
            const cJSON *lag = cJSON_GetObjectItemCaseSensitive(part, "consumer_lag");
            /* -1: the internal "unassigned" partition, or one not fetched here. */
            if (topic->string == NULL || part->string == NULL || strcmp(part->string, "-1") == 0 ||
                !cJSON_IsNumber(lag) || lag->valuedouble < 0)
                continue;
            of_metric_set(o->lag, (const char *const[]){topic->string, part->string},
                          lag->valuedouble);
        }
    }
    cJSON_Delete(root);
    return 0;
}

static int obs_kafka_conf(of_worker *w, rd_kafka_conf_t *conf, char *errstr, size_t size)
{
    char cur[32];
    size_t n = sizeof cur;
    /* KAFKA_STATISTICS_INTERVAL_MS, when set, was applied by of_kafka_conf_new()
     * and wins; 0 turns statistics (lag gauges, the no-assignment readiness)
     * off. */
    if (getenv("KAFKA_STATISTICS_INTERVAL_MS") == NULL &&
        rd_kafka_conf_set(conf, "statistics.interval.ms", KAFKA_STATS_INTERVAL, errstr, size) !=
            RD_KAFKA_CONF_OK)
        return -1;
    if (rd_kafka_conf_get(conf, "statistics.interval.ms", cur, &n) == RD_KAFKA_CONF_OK)
        w->obs->kafka_stats_ms = strtoll(cur, NULL, 10);
    rd_kafka_conf_set_stats_cb(conf, on_kafka_stats);
    return 0;
}

/* Why the worker should not get traffic now, or NULL when it may. */
static const char *not_ready(of_worker *w, char *buf, size_t size)
{
    struct of_worker_obs *o = w->obs;
    uint64_t now = uv_now(w->loop);
    if (w->stopping)
        return "shutting down";
    if (!of_db_ready(&w->db))
        return "postgres connection \"batch\" is not ready";
    if (w->consumer.assigned_partitions > 0)
        return NULL;
    /* No partition can be normal (more replicas than partitions). Such a
     * consumer is fine while it is polled (statistics only arrive through
     * the poll) and its group is up. */
    if (o->kafka_stats_ms <= 0)
        return "kafka consumer has no partitions assigned";
    if (o->kafka_stats_at == 0) {
        snprintf(buf, size, "kafka consumer has no partitions assigned and no statistics yet");
        return buf;
    }
    if (now - o->kafka_stats_at > 3 * (uint64_t)o->kafka_stats_ms + 1000) {
        snprintf(buf, size,
                 "kafka consumer has no partitions assigned and was not polled for %" PRIu64 " ms",
                 now - o->kafka_stats_at);
        return buf;
    }
    if (strcmp(o->cgrp_state, "up") != 0) {
        snprintf(buf, size, "kafka consumer has no partitions assigned and its group is \"%s\"",
                 o->cgrp_state);
        return buf;
    }
    return NULL;
}

static void on_healthz(void *arg, of_http_response *res)
{
    /* Answering at all proves the loop runs. */
    fputs("ok\n", res->body);
}

static void on_readyz(void *arg, of_http_response *res)
{
    char buf[160];
    const char *why = not_ready(arg, buf, sizeof buf);
    if (why != NULL) {
        res->status = 503;
        fprintf(res->body, "not ready: %s\n", why);
        return;
    }
    fputs("ready\n", res->body);
}

static void on_metrics(void *arg, of_http_response *res)
{
    of_worker *w = arg;
    res->content_type = OF_METRICS_CONTENT_TYPE;
    if (of_metrics_render(&w->metrics, res->body) != 0)
        res->status = 500;
}

int of_worker_gauge_query(of_worker *w, const char *name, const char *help, const char *sql)
{
    struct of_worker_obs *o = w->obs;
    of_metric *g;
    if (o == NULL || sql == NULL || o->n_queries == MAX_GAUGE_QUERIES)
        return -1;
    g = of_metrics_gauge(&w->metrics, name, help, NULL, 0);
    if (g == NULL)
        return -1;
    o->queries[o->n_queries].gauge = g;
    o->queries[o->n_queries].sql = sql;
    o->n_queries++;
    return 0;
}

static void set_from_result(of_metric *g, const PGresult *r, int col)
{
    if (r != NULL && PQntuples(r) > 0 && PQnfields(r) > col && !PQgetisnull(r, 0, col))
        of_metric_set(g, NULL, strtod(PQgetvalue(r, 0, col), NULL));
}

static void on_stats(of_db *db, of_db_pipeline *p, int status, void *arg)
{
    of_worker *w = arg;
    struct of_worker_obs *o = w->obs;
    o->stats_in_flight = false;
    if (status == OF_DB_OK) {
        set_from_result(o->backlog, of_db_pipeline_result(p, 0), 0);
        set_from_result(o->oldest, of_db_pipeline_result(p, 0), 1);
        for (size_t i = 0; i < o->n_queries; i++)
            set_from_result(o->queries[i].gauge, of_db_pipeline_result(p, i + 1), 0);
    } else if (status == OF_DB_ESQL) {
        of_log_warn("could not refresh metrics: %s", p->error);
    }
    of_db_pipeline_reset(p);
}

static void on_stats_timer(uv_timer_t *t)
{
    of_worker *w = t->data;
    struct of_worker_obs *o = w->obs;
    int rc;
    if (w->stopping || o->stats_in_flight || !of_db_ready(&w->aux))
        return;
    of_db_pipeline_reset(&o->stats);
    rc = of_db_pipeline_add_sql(&o->stats, outbox_stats_sql, 0, NULL);
    for (size_t i = 0; rc == 0 && i < o->n_queries; i++)
        rc = of_db_pipeline_add_sql(&o->stats, o->queries[i].sql, 0, NULL);
    if (rc == 0)
        rc = of_db_submit(&w->aux, &o->stats, on_stats, w);
    if (rc != 0) {
        of_db_pipeline_reset(&o->stats);
        return;
    }
    o->stats_in_flight = true;
}

static int obs_init(of_worker *w)
{
    struct of_worker_obs *o = calloc(1, sizeof *o);
    of_metrics *m = &w->metrics;
    if (o == NULL)
        return -1;
    w->obs = o;
    of_metrics_init(m);
    of_http_init(&w->http, w->loop);
    of_db_pipeline_init(&o->stats);
    /* A family that cannot be registered (no memory) is NULL, and its
     * updates do nothing: metrics never stop the worker. */
    o->consumed = of_metrics_counter(
        m, "orderflow_events_consumed_total",
        "Events taken from Kafka, by topic and type (\"invalid\" when the worker could not decode "
        "the event).",
        l_topic_type, 2);
    o->processed = of_metrics_counter(
        m, "orderflow_events_processed_total",
        "Events whose transaction committed, by outcome: applied, ignored, rejected or duplicate.",
        l_processed, 3);
    o->dead = of_metrics_counter(m, "orderflow_events_dead_lettered_total",
                                 "Events dead-lettered (committed), by error code.", l_dead, 2);
    o->transitions = of_metrics_counter(m, "orderflow_transitions_total",
                                        "State machine transitions committed, by execution "
                                        "(OrderProcess, OrderUpdate, ReturnRefund) and status.",
                                        l_transition, 3);
    o->batch_size =
        of_metrics_histogram(m, "orderflow_batch_size", "Events per batch taken from Kafka.", NULL,
                             0, batch_bounds, N_OF(batch_bounds));
    o->txn_seconds = of_metrics_histogram(
        m, "orderflow_transaction_duration_seconds",
        "Time Postgres took for a committed batch transaction (load and write pipelines).", NULL, 0,
        txn_bounds, N_OF(txn_bounds));
    o->step_latency = of_metrics_histogram(
        m, "orderflow_step_latency_seconds",
        "Time from an event's ce_time to the commit of its step, by event type.", l_type, 1,
        latency_bounds, N_OF(latency_bounds));
    o->retries =
        of_metrics_counter(m, "orderflow_retries_total",
                           "Batch transactions retried after a transient failure.", NULL, 0);
    o->published = of_metrics_counter(m, "orderflow_outbox_published_total",
                                      "Outbox events delivered to Kafka.", NULL, 0);
    o->failed =
        of_metrics_counter(m, "orderflow_outbox_failed_total",
                           "Outbox deliveries that failed (the sweep retries them).", NULL, 0);
    o->swept = of_metrics_counter(m, "orderflow_outbox_swept_total",
                                  "Outbox rows republished by the sweep.", NULL, 0);
    o->backlog =
        of_metrics_gauge(m, "orderflow_outbox_backlog",
                         "Unpublished outbox rows (all workers), refreshed every 5 s.", NULL, 0);
    o->oldest =
        of_metrics_gauge(m, "orderflow_outbox_oldest_unpublished_age_seconds",
                         "Age of the oldest unpublished outbox row, refreshed every 5 s.", NULL, 0);
    o->lag = of_metrics_gauge(m, "orderflow_consumer_lag",
                              "Messages behind the end of each partition this consumer fetches "
                              "(librdkafka statistics).",
                              l_lag, 2);
    o->assigned = of_metrics_gauge(m, "orderflow_consumer_assigned_partitions",
                                   "Partitions assigned to this consumer.", NULL, 0);
    o->reconnects =
        of_metrics_counter(m, "orderflow_db_reconnects_total",
                           "Postgres connections lost or failed, by connection.", l_connection, 1);
    o->build_info = of_metrics_gauge(m, "orderflow_build_info", "Version of the worker (always 1).",
                                     l_build, 2);
    of_metric_set(o->build_info, (const char *const[]){ORDERFLOW_VERSION, w->h->name}, 1);
    if (of_metrics_add_collector(m, collect, w) != 0 ||
        of_http_add_route(&w->http, "/healthz", on_healthz, w) != 0 ||
        of_http_add_route(&w->http, "/readyz", on_readyz, w) != 0 ||
        of_http_add_route(&w->http, "/metrics", on_metrics, w) != 0)
        return -1;
    return 0;
}

static void obs_start(of_worker *w)
{
    struct of_worker_obs *o = w->obs;
    const char *addr = w->cfg.http_address ? w->cfg.http_address : "0.0.0.0";
    bool v6 = strchr(addr, ':') != NULL;
    int rc;

    uv_timer_init(w->loop, &o->stats_timer);
    o->stats_timer.data = w;
    uv_timer_start(&o->stats_timer, on_stats_timer, 1000, STATS_INTERVAL_MS);
    if (w->cfg.http_port == 0) {
        of_log_info("http endpoint disabled (http-port 0)");
        return;
    }
    rc = of_http_start(&w->http, addr, (uint16_t)w->cfg.http_port);
    if (rc != 0) {
        /* The worker still does its work; probes fail, which is visible. */
        of_log_error("could not start the http endpoint on \"%s\" port %" PRId64 ": %s", addr,
                     w->cfg.http_port,
                     rc == OF_HTTP_EINVAL   ? "not an IP address"
                     : rc == OF_HTTP_ESTART ? "could not listen (see the previous message)"
                                            : uv_strerror(rc));
        return;
    }
    of_log_info("http endpoint on http://%s%s%s:%u (/healthz, /readyz, /metrics)", v6 ? "[" : "",
                addr, v6 ? "]" : "", (unsigned)w->http.port);
}

static void on_http_closed(of_http *h)
{
    of_worker *w = h->loop->data;
    w->closing--;
}

static void obs_close(of_worker *w)
{
    if (w->obs == NULL)
        return;
    close_handle(w, (uv_handle_t *)&w->obs->stats_timer);
    if (!w->http.closing) {
        w->closing++;
        of_http_close(&w->http, on_http_closed);
    }
}

static void obs_free(of_worker *w)
{
    if (w->obs != NULL) {
        of_db_pipeline_free(&w->obs->stats);
        free(w->obs);
        w->obs = NULL;
    }
    of_metrics_free(&w->metrics);
}
