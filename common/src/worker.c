/* worker.c: the worker process: start-up, the loop's plumbing, polling, and shutdown. */
#include "worker_internal.h"

#include "orderflow/dlq.h"
#include "orderflow/failpoint.h"
#include "orderflow/inbox.h"
#include "orderflow/log.h"

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

static void shutdown_continue(of_worker *w);

const char *of_worker_topic(of_worker *w, const char *topic, char *buf, size_t size)
{
    snprintf(buf, size, "%s%s", w->cfg.topic_prefix ? w->cfg.topic_prefix : "", topic);
    return buf;
}

/* Polling. */

static void on_kick(uv_idle_t *h);

static void try_next_batch(of_worker *w)
{
    rd_kafka_message_t **msgs;
    size_t n;
    /* One batch at a time. While one is in progress the consumer serves the
     * group by itself once the batch runs long (of_consumer_set_busy), also
     * through a Postgres outage, during which the batch waits to retry. */
    if (w->busy || w->stopping || of_bp_holding(w))
        return;
    /* Once a second a parked key that is due is replayed before the next poll (park.c). */
    if (of_park_claim(w))
        return;
    msgs = calloc((size_t)w->cfg.batch_size, sizeof *msgs);
    if (msgs == NULL)
        return;
    n = of_consumer_poll(&w->consumer, msgs, (size_t)w->cfg.batch_size);
    if (w->park_more) {
        /* A replay ran before this poll: the next turn claims again. */
        w->park_more = false;
        w->park_due = true;
        if (n == 0)
            uv_idle_start(&w->kick, on_kick);
    }
    if (n > 0)
        of_batch_start(w, msgs, n);
    free(msgs);
}

static void on_kick(uv_idle_t *h)
{
    of_worker *w = h->data;
    uv_idle_stop(h);
    try_next_batch(w);
}

void of_worker_batch_done(of_worker *w)
{
    if (w->stopping) {
        shutdown_continue(w);
        return;
    }
    if (of_bp_holding(w)) {
        /* Over a limit (backpressure.c): no batch; fetching paused, the group served. */
        of_consumer_set_busy(&w->consumer, true);
        return;
    }
    uv_idle_start(&w->kick, on_kick);
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
    close_handle(w, (uv_handle_t *)&w->pruner.timer);
    close_handle(w, (uv_handle_t *)&w->park_timer);
    of_bp_close(w, close_handle);
    of_obs_close(w, close_handle);
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
    if (signum != 0)
        of_log_info("signal %d: shutting down (grace period %" PRId64 " ms)", signum,
                    w->cfg.grace_period);
    else
        of_log_error("shutting down after a fatal kafka error (grace period %" PRId64
                     " ms); exit code %d so that the process is restarted",
                     w->cfg.grace_period, w->exit_code);
    if (w->h->stop != NULL)
        w->h->stop(w->h->ctx, w);
    of_pruner_stop(&w->pruner);
    of_bp_stop(w);
    uv_timer_stop(&w->park_timer);
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
    } else if (of_batch_waiting(w)) {
        /* Waiting to retry: give up the batch now (it was not acknowledged). */
        of_batch_abandon(w);
    }
}

static void on_signal(uv_signal_t *s, int signum)
{
    begin_shutdown(s->data, signum);
}

/* A fatal Kafka error: the handle cannot be used again. The worker stops
 * taking batches, is not ready, drains what it can and exits 70; its restart
 * gets new handles, and outbox rows not published meanwhile go out through
 * a sweep (this worker's after the restart, or another replica's). */
static void on_kafka_fatal(of_worker *w)
{
    if (w->stopping)
        return;
    w->exit_code = EX_SOFTWARE;
    begin_shutdown(w, 0);
}

static void on_producer_fatal(of_producer *p)
{
    on_kafka_fatal(p->arg);
}

static void on_consumer_fatal(of_consumer *c)
{
    on_kafka_fatal(c->arg);
}

int of_worker_prune_add(of_worker *w, const of_prune_target *t, int64_t retention_ms)
{
    return of_pruner_add(&w->pruner, t, retention_ms);
}

/* The pruner on the relay connection, with the runtime's targets: the
 * inbox and dead letters of this worker, published outbox rows and, when
 * asked for, finished executions. Returns 0, or OF_EINVAL (logged) for
 * settings the config table could not refuse. */
static int setup_pruner(of_worker *w)
{
    const of_prune_settings *s = &w->cfg.prune;
    char err[160];
    int rc = of_prune_settings_check(s, err, sizeof err);
    if (rc != 0) {
        of_log_error("%s", err);
        return rc;
    }
    rc = of_pruner_init(&w->pruner, w->loop, &w->aux, &w->metrics, w->h->name,
                        (uint64_t)s->interval, s->batch);
    if (rc == 0)
        rc = of_pruner_add(&w->pruner, &of_prune_inbox, s->inbox);
    if (rc == 0)
        rc = of_pruner_add(&w->pruner, &of_prune_outbox, s->outbox);
    if (rc == 0)
        rc = of_pruner_add(&w->pruner, &of_prune_dead_letters, s->dead_letters);
    if (rc == 0)
        rc = of_pruner_add(&w->pruner, &of_prune_executions, s->history);
    return rc;
}

static int build_statements(of_worker *w, size_t *n)
{
    const of_db_stmt *groups[] = {of_outbox_stmts, of_inbox_stmts,       of_dlq_stmts,
                                  of_park_stmts,   w->h->machine->stmts, w->h->stmts};
    size_t sizes[] = {of_outbox_n_stmts, of_inbox_n_stmts, of_dlq_n_stmts,
                      of_park_n_stmts,   OF_SQL_COUNT,     w->h->n_stmts};
    const size_t n_groups = sizeof sizes / sizeof sizes[0];
    size_t total = w->h->n_sets, k = 0;
    for (size_t g = 0; g < n_groups; g++)
        total += sizes[g];
    w->stmts = calloc(total, sizeof *w->stmts);
    if (w->stmts == NULL)
        return OF_ENOMEM;
    for (size_t g = 0; g < n_groups; g++)
        for (size_t i = 0; i < sizes[g]; i++)
            w->stmts[k++] = groups[g][i];
    for (size_t i = 0; i < w->h->n_sets; i++)
        w->stmts[k++] = w->h->sets[i].stmt;
    *n = total;
    return of_apply_rows_init(w);
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
    int result = EX_SOFTWARE, rc;
    sigset_t stop_signals;

    if (w == NULL)
        return EX_OSERR;
    w->h = h;
    w->cfg = *cfg;
    memset(cfg, 0, sizeof *cfg);
    w->retry_ms = OF_RETRY_MIN_MS;
    w->exit_code = 0;
    of_log_init(h->name);
    if (of_log_level_parse(w->cfg.log_level, &level) == 0)
        of_log_set_level(level);
    snprintf(w->source, sizeof w->source, "orderflow/%s", h->name);
    if (of_machine_validate(h->machine, errstr, sizeof errstr) != OF_OK) {
        of_log_error("the %s machine is invalid: %s", h->machine->name, errstr);
        goto out_free;
    }
    if (w->cfg.group_id == NULL) {
        snprintf(group, sizeof group, "orderflow-%s", h->name);
        w->cfg.group_id = strdup(group);
    }
    if (h->n_topics > 8 || w->cfg.group_id == NULL)
        goto out_free;
    for (size_t i = 0; i < h->n_topics; i++)
        topics[i] = of_worker_topic(w, h->topics[i], w->topics[i], sizeof w->topics[i]);

    /* SIGTERM and SIGINT wait (pending) until their handlers are installed
     * below: a stop requested while the worker is still starting is a clean
     * shutdown once the loop runs, never death by the signal's default
     * action. Threads created meanwhile (librdkafka's) inherit the mask. */
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    if (uv_loop_init(&loop) != 0)
        goto out_free;
    loop.data = w;
    w->loop = &loop;
    if (of_obs_init(w) != 0 || of_bp_init(w) != 0) {
        of_log_error("could not set up metrics");
        goto out_loop;
    }
    rc = setup_pruner(w);
    if (rc != 0) {
        result = rc == OF_EINVAL ? EX_CONFIG : EX_SOFTWARE;
        goto out_loop;
    }
    if (of_db_conninfo_check(w->cfg.database_url, NULL) != OF_OK) {
        of_log_error("invalid database-url: not a libpq connection string or URI (libpq's message "
                     "is withheld: it may quote the password)");
        result = EX_CONFIG;
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
    /* The relay's marks, claims, failure records and prunes are redone when
     * a crash loses their commit (a row sent again, a batch pruned again):
     * they need not wait for the WAL flush. */
    w->aux.async_commit = true;
    w->db.statement_timeout_ms = (uint64_t)w->cfg.statement_timeout;
    w->aux.statement_timeout_ms = (uint64_t)w->cfg.statement_timeout;
    pconf = of_kafka_conf_new(w->cfg.kafka_bootstrap, h->name, errstr, sizeof errstr);
    cconf = of_kafka_conf_new(w->cfg.kafka_bootstrap, h->name, errstr, sizeof errstr);
    if (pconf == NULL || cconf == NULL || of_obs_kafka_conf(w, cconf, errstr, sizeof errstr) != 0) {
        of_log_error("invalid kafka configuration: %s", errstr);
        result = EX_CONFIG;
        goto out_loop;
    }
    if (of_producer_init(&w->producer, &loop, pconf, on_delivery, w) != 0) {
        pconf = NULL;
        goto out_loop;
    }
    pconf = NULL;
    rc = of_outbox_relay_init(&w->relay, &loop, &w->aux, &w->producer,
                              (uint64_t)w->cfg.sweep_interval, (uint64_t)w->cfg.sweep_grace);
    if (rc != 0) {
        result = rc == OF_EINVAL ? EX_CONFIG : EX_SOFTWARE;
        goto out_loop;
    }
    w->relay.max_failures = (uint32_t)w->cfg.outbox_max_failures;
    /* The batch connection writes the rows this process's producer sends. */
    of_outbox_relay_session(&w->relay, &w->db);
    if (of_consumer_init(&w->consumer, &loop, cconf, w->cfg.group_id, topics, h->n_topics,
                         on_consumer_wakeup, NULL, w) != 0) {
        cconf = NULL;
        goto out_loop;
    }
    cconf = NULL;
    w->producer.on_fatal = on_producer_fatal;
    w->consumer.on_fatal = on_consumer_fatal;
    if (of_failpoint("slow-start"))
        sleep(3); /* a start-up slower than a stop request (test_fatal.sh) */
    uv_signal_init(&loop, &w->sigterm);
    uv_signal_init(&loop, &w->sigint);
    w->sigterm.data = w->sigint.data = w;
    uv_signal_start(&w->sigterm, on_signal, SIGTERM);
    uv_signal_start(&w->sigint, on_signal, SIGINT);
    pthread_sigmask(SIG_UNBLOCK, &stop_signals, NULL);
    uv_timer_init(&loop, &w->retry_timer);
    uv_timer_init(&loop, &w->shutdown_timer);
    w->retry_timer.data = w->shutdown_timer.data = w;
    uv_idle_init(&loop, &w->kick);
    w->kick.data = w;
    uv_timer_init(&loop, &w->park_timer);
    of_db_pipeline_init(&w->park_claim);
    if (h->start != NULL && h->start(h->ctx, w) != 0) {
        of_log_error("could not start the worker's handler");
        raise(SIGTERM);
    }
    if (of_db_start(&w->db) != 0 || of_db_start(&w->aux) != 0)
        goto out_loop;
    of_outbox_relay_start(&w->relay);
    of_pruner_start(&w->pruner);
    of_obs_start(w);
    of_park_start(w);
    of_log_info("started: group \"%s\", %zu topic(s) from \"%s\", batch size %" PRId64,
                w->cfg.group_id, h->n_topics, topics[0], w->cfg.batch_size);

    uv_run(&loop, UV_RUN_DEFAULT);
    result = w->exit_code;
    of_log_info("stopped: %" PRIu64 " batches, %" PRIu64 " events, %" PRIu64 " applied, %" PRIu64
                " duplicates, %" PRIu64 " dead-lettered, %" PRIu64 " retries, %" PRIu64
                " retries exhausted, %" PRIu64 " parked, %" PRIu64 " unparked",
                w->n_batches, w->n_events, w->n_applied, w->n_duplicates, w->n_dead, w->n_retries,
                w->n_exhausted, w->n_parked, w->n_unparked);
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
    of_pruner_free(&w->pruner);
    of_bp_free(w);
    of_obs_free(w);
    of_db_pipeline_free(&w->lp);
    of_db_pipeline_free(&w->wp);
    of_db_pipeline_free(&w->park_claim);
    free(w->stmts);
    of_apply_rows_free(w);
    free(w->cfg.database_url);
    free(w->cfg.kafka_bootstrap);
    free(w->cfg.group_id);
    free(w->cfg.topic_prefix);
    free(w->cfg.log_level);
    free(w->cfg.http_address);
    free(w);
    if (of_kafka_abandoned() > 0) {
        /* A consumer handle still runs its threads (kafka.c): no exit
         * handler may run beside them. */
        fflush(stdout);
        fflush(stderr);
        _exit(result);
    }
    return result;
}
