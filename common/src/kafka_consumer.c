/* kafka_consumer.c: the librdkafka consumer served from the libuv loop: polling, the group
 * served while a batch runs long (pausing fetching), rebalances, offsets and the close. */
#include "kafka_internal.h"

#include "orderflow/log.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Pauses or resumes fetching for the whole current assignment. */
static void pause_assignment(of_consumer *c, bool pause)
{
    rd_kafka_topic_partition_list_t *parts = NULL;
    rd_kafka_resp_err_t err = rd_kafka_assignment(c->rk, &parts);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR && parts->cnt > 0)
        err = pause ? rd_kafka_pause_partitions(c->rk, parts)
                    : rd_kafka_resume_partitions(c->rk, parts);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
        of_log_warn("could not %s fetching: %s", pause ? "pause" : "resume", rd_kafka_err2str(err));
    if (parts != NULL)
        rd_kafka_topic_partition_list_destroy(parts);
}

/* Drops held messages of the partitions in parts (all of them if parts is
 * NULL); returns how many. */
static size_t drop_held(of_consumer *c, const rd_kafka_topic_partition_list_t *parts)
{
    size_t kept = 0, dropped = 0;
    for (size_t i = 0; i < c->n_held; i++) {
        rd_kafka_message_t *m = c->held[i];
        if (parts == NULL || rd_kafka_topic_partition_list_find(parts, rd_kafka_topic_name(m->rkt),
                                                                m->partition) != NULL) {
            rd_kafka_message_destroy(m);
            dropped++;
        } else {
            c->held[kept++] = m;
        }
    }
    c->n_held = kept;
    return dropped;
}

/* Keeps m for the next of_consumer_poll(); on no memory, drops it and seeks
 * its partition back to it so that nothing is skipped. */
static void hold(of_consumer *c, rd_kafka_message_t *m)
{
    if (c->n_held == c->cap_held) {
        size_t cap = c->cap_held ? c->cap_held * 2 : 64;
        rd_kafka_message_t **held = realloc(c->held, cap * sizeof *held);
        if (held == NULL) {
            rd_kafka_topic_partition_list_t *at = rd_kafka_topic_partition_list_new(1);
            rd_kafka_error_t *error;
            rd_kafka_topic_partition_list_add(at, rd_kafka_topic_name(m->rkt), m->partition)
                ->offset = m->offset;
            error = rd_kafka_seek_partitions(c->rk, at, 0);
            if (error != NULL)
                rd_kafka_error_destroy(error);
            rd_kafka_topic_partition_list_destroy(at);
            rd_kafka_message_destroy(m);
            return;
        }
        c->held = held;
        c->cap_held = cap;
    }
    c->held[c->n_held++] = m;
}

/* Takes what the consumer queue has (serving rebalances through their
 * callback); messages go to the caller's array up to max, the rest are held. */
static size_t take(of_consumer *c, rd_kafka_message_t **msgs, size_t max)
{
    size_t n = 0;
    if (c->serve_timer.data != NULL)
        c->polled_at = uv_now(c->serve_timer.loop);
    for (;;) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, 0);
        if (m == NULL)
            break;
        if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                of_log_warn("kafka consumer: %s", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        if (n < max) {
            msgs[n++] = m;
            if (n == max)
                break;
        } else {
            hold(c, m);
        }
    }
    return n;
}

/* Every OF_CONSUMER_SERVE_EVERY_MS. While a batch has run for
 * OF_CONSUMER_SERVE_AFTER_MS: fetching paused, the queue polled (messages
 * held). Otherwise, when nothing has polled for that long (an idle consumer
 * whose queue stays empty gets no wakeup, and librdkafka evicts a member that
 * does not poll within max.poll.interval.ms), the caller is woken to poll. */
static void on_serve_timer(uv_timer_t *t)
{
    of_consumer *c = t->data;
    uint64_t now = uv_now(t->loop);
    if (c->closing || c->rk == NULL)
        return;
    if (!c->busy) {
        if (now - c->polled_at >= OF_CONSUMER_SERVE_AFTER_MS)
            c->wakeup(c, c->arg);
        return;
    }
    if (now - c->busy_since < OF_CONSUMER_SERVE_AFTER_MS)
        return;
    if (!c->paused) {
        c->paused = true;
        c->paused_at = now;
        c->n_pauses++;
        of_log_info("a batch has been in progress for %" PRIu64 " ms: fetching paused, the group "
                    "served until it ends",
                    now - c->busy_since);
    }
    /* Every time: partitions assigned since the last pause are paused too. */
    pause_assignment(c, true);
    (void)take(c, NULL, 0);
}

void of_consumer_set_busy(of_consumer *c, bool busy)
{
    c->busy = busy;
    if (busy && c->serve_timer.data != NULL)
        c->busy_since = uv_now(c->serve_timer.loop);
}

static void notify_rebalance(of_consumer *c, bool assigned,
                             const rd_kafka_topic_partition_list_t *parts)
{
    if (assigned)
        c->assigned_partitions += (uint64_t)parts->cnt;
    else
        c->assigned_partitions = c->assigned_partitions >= (uint64_t)parts->cnt
                                     ? c->assigned_partitions - (uint64_t)parts->cnt
                                     : 0;
    for (int i = 0; i < parts->cnt; i++) {
        of_log_ctx ctx = {NULL, NULL, parts->elems[i].topic, parts->elems[i].partition, -1, NULL};
        of_log_write(OF_LOG_INFO, &ctx, "partition %s", assigned ? "assigned" : "revoked");
    }
    if (c->rebalance != NULL)
        c->rebalance(c, assigned, parts, c->arg);
}

/* Applies a rebalance for either protocol: eager (assign/unassign all) or
 * cooperative (incremental). */
static void apply_rebalance(of_consumer *c, rd_kafka_resp_err_t err,
                            rd_kafka_topic_partition_list_t *parts)
{
    rd_kafka_t *rk = c->rk;
    /* NULL once the member has left the group (evicted for not polling, or
     * closing): then the whole assignment goes, with rd_kafka_assign(). */
    const char *protocol = rd_kafka_rebalance_protocol(rk);
    bool coop = protocol != NULL && strcmp(protocol, "COOPERATIVE") == 0;
    rd_kafka_error_t *error = NULL;
    rd_kafka_resp_err_t rerr = RD_KAFKA_RESP_ERR_NO_ERROR;

    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        c->synced = true;
        if (coop)
            error = rd_kafka_incremental_assign(rk, parts);
        else
            rerr = rd_kafka_assign(rk, parts);
        /* While a long batch has fetching paused, new partitions wait too.
         * Otherwise they are resumed explicitly: librdkafka keeps a
         * partition's pause flag across revoke and assign, so one revoked
         * while paused (and so missed by the resume of the assignment)
         * would come back paused and never be fetched again. */
        if (error == NULL && rerr == RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (c->paused)
                (void)rd_kafka_pause_partitions(rk, parts);
            else
                (void)rd_kafka_resume_partitions(rk, parts);
        }
        notify_rebalance(c, true, parts);
    } else {
        notify_rebalance(c, false, parts);
        size_t dropped = drop_held(c, coop ? parts : NULL);
        if (dropped > 0)
            of_log_info("dropped %zu held message(s) of the revoked partitions (their new owner "
                        "reads them)",
                        dropped);
        /* Commit what was stored for the partitions being given away, so the
         * next owner starts after the events already committed to Postgres
         * (redeliveries would be dropped by the inbox anyway). */
        if (!rd_kafka_assignment_lost(rk))
            rd_kafka_commit(rk, NULL, 1);
        if (coop)
            error = rd_kafka_incremental_unassign(rk, parts);
        else
            rerr = rd_kafka_assign(rk, NULL);
    }
    if (error != NULL) {
        of_log_error("could not apply rebalance: %s", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    } else if (rerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        of_log_error("could not apply rebalance: %s", rd_kafka_err2str(rerr));
    }
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    apply_rebalance(opaque, err, parts);
}

static void consumer_close_handles(of_consumer *c);
static void on_consumer_close_timer(uv_timer_t *t);

/* Serves the close queue until librdkafka reports the consumer closed. */
static void consumer_serve_close(of_consumer *c)
{
    rd_kafka_event_t *ev;
    rd_kafka_message_t *m;
    /* Messages still queued or held are dropped: their offsets were not stored. */
    for (m = rd_kafka_consumer_poll(c->rk, 0); m != NULL; m = rd_kafka_consumer_poll(c->rk, 0))
        rd_kafka_message_destroy(m);
    (void)drop_held(c, NULL);
    for (ev = rd_kafka_queue_poll(c->queue, 0); ev != NULL; ev = rd_kafka_queue_poll(c->queue, 0)) {
        if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_REBALANCE) {
            apply_rebalance(c, rd_kafka_event_error(ev), rd_kafka_event_topic_partition_list(ev));
        }
        rd_kafka_event_destroy(ev);
    }
    if (rd_kafka_consumer_closed(c->rk))
        consumer_close_handles(c);
}

static void on_consumer_pipe(uv_poll_t *h, int status, int events)
{
    of_consumer *c = h->data;
    of_kafka__drain_pipe(c->fds[0]);
    if (c->closing) {
        if (c->rk != NULL)
            consumer_serve_close(c);
        return;
    }
    c->wakeup(c, c->arg);
}

int of_consumer_init(of_consumer *c, uv_loop_t *loop, rd_kafka_conf_t *conf, const char *group,
                     const char *const *topics, size_t n_topics, of_consumer_wakeup_cb wakeup,
                     of_consumer_rebalance_cb rebalance, void *arg)
{
    char errstr[512];
    rd_kafka_topic_partition_list_t *subs = NULL;
    rd_kafka_resp_err_t err;
    int result = OF_ESTART;

    memset(c, 0, sizeof *c);
    c->fds[0] = c->fds[1] = -1;
    c->wakeup = wakeup;
    c->rebalance = rebalance;
    c->arg = arg;
    if (of_kafka__set_prop(conf, "group.id", group, errstr, sizeof errstr) != 0 ||
        of_kafka__set_default(conf, "enable.auto.offset.store", "false", errstr, sizeof errstr) !=
            0 ||
        of_kafka__set_prop(conf, "enable.auto.offset.store", "false", errstr, sizeof errstr) != 0 ||
        of_kafka__set_default(conf, "enable.auto.commit", "true", errstr, sizeof errstr) != 0 ||
        of_kafka__set_default(conf, "auto.commit.interval.ms", "1000", errstr, sizeof errstr) !=
            0 ||
        of_kafka__set_default(conf, "auto.offset.reset", "earliest", errstr, sizeof errstr) != 0 ||
        of_kafka__set_default(conf, "session.timeout.ms", "10000", errstr, sizeof errstr) != 0 ||
        of_kafka__set_default(conf, "heartbeat.interval.ms", "1000", errstr, sizeof errstr) != 0 ||
        of_kafka__set_default(conf, "fetch.wait.max.ms", "50", errstr, sizeof errstr) != 0 ||
        /* Prefetch per partition: librdkafka's default (100000 messages) fetched a whole
         * backlog into memory (peak RSS 54 to 64 MB with 100,000 events waiting, 134 MB
         * with 340,000). 5000 bounds it (39 to 42 MB) at no cost in throughput; 1000 bounded
         * it further (29 to 34 MB) but cost a fifth of the burst rate (bench/README.md). */
        of_kafka__set_default(conf, "queued.min.messages", "5000", errstr, sizeof errstr) != 0 ||
        of_kafka__set_default(conf, "partition.assignment.strategy", "cooperative-sticky", errstr,
                              sizeof errstr) != 0) {
        of_log_error("could not configure consumer: %s", errstr);
        rd_kafka_conf_destroy(conf);
        return OF_ESTART;
    }
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    rd_kafka_conf_set_opaque(conf, c);
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (c->rk == NULL) {
        of_log_error("could not create consumer: %s", errstr);
        rd_kafka_conf_destroy(conf);
        return OF_ESTART;
    }
    rd_kafka_poll_set_consumer(c->rk);
    c->queue = rd_kafka_queue_get_consumer(c->rk);
    if (of_kafka__open_pipe(c->fds) != 0) {
        of_log_error("could not create pipe: %s", strerror(errno));
        goto out;
    }
    rd_kafka_queue_io_event_enable(c->queue, c->fds[1], "1", 1);
    if (uv_poll_init(loop, &c->poll, c->fds[0]) != 0)
        goto out;
    c->poll.data = c;
    if (uv_timer_init(loop, &c->close_timer) != 0) {
        /* Without its timers the handle set is incomplete: drop the watcher. */
        uv_close((uv_handle_t *)&c->poll, NULL);
        c->poll.data = NULL;
        goto out;
    }
    if (uv_timer_init(loop, &c->serve_timer) != 0) {
        uv_close((uv_handle_t *)&c->close_timer, NULL);
        uv_close((uv_handle_t *)&c->poll, NULL);
        c->poll.data = NULL;
        goto out;
    }
    c->close_timer.data = c;
    c->serve_timer.data = c;
    if (uv_poll_start(&c->poll, UV_READABLE, on_consumer_pipe) != 0)
        goto out;
    subs = rd_kafka_topic_partition_list_new((int)n_topics);
    for (size_t i = 0; i < n_topics; i++)
        rd_kafka_topic_partition_list_add(subs, topics[i], RD_KAFKA_PARTITION_UA);
    err = rd_kafka_subscribe(c->rk, subs);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        of_log_error("could not subscribe: %s", rd_kafka_err2str(err));
        goto out;
    }
    c->polled_at = uv_now(loop);
    uv_timer_start(&c->serve_timer, on_serve_timer, OF_CONSUMER_SERVE_EVERY_MS,
                   OF_CONSUMER_SERVE_EVERY_MS);
    result = 0;
out:
    if (subs != NULL)
        rd_kafka_topic_partition_list_destroy(subs);
    /* On failure the half-built consumer stays for of_consumer_close(). */
    return result;
}

size_t of_consumer_poll(of_consumer *c, rd_kafka_message_t **msgs, size_t max)
{
    size_t n = 0;
    if (c->closing || c->rk == NULL)
        return 0;
    if (c->paused) {
        c->paused = false;
        pause_assignment(c, false);
        of_log_info("fetching resumed after %" PRIu64 " ms paused",
                    uv_now(c->serve_timer.loop) - c->paused_at);
    }
    if (c->n_held > 0) {
        /* Held messages came before anything still queued: they go first. */
        n = c->n_held < max ? c->n_held : max;
        memcpy(msgs, c->held, n * sizeof *msgs);
        memmove(c->held, c->held + n, (c->n_held - n) * sizeof *c->held);
        c->n_held -= n;
        if (n == max)
            return n;
    }
    return n + take(c, msgs + n, max - n);
}

int of_consumer_store(of_consumer *c, rd_kafka_message_t *const *msgs, size_t n)
{
    rd_kafka_topic_partition_list_t *list;
    rd_kafka_resp_err_t err;
    if (n == 0)
        return 0;
    list = rd_kafka_topic_partition_list_new((int)n);
    for (size_t i = 0; i < n; i++) {
        const char *topic = rd_kafka_topic_name(msgs[i]->rkt);
        rd_kafka_topic_partition_t *tp =
            rd_kafka_topic_partition_list_find(list, topic, msgs[i]->partition);
        if (tp == NULL)
            tp = rd_kafka_topic_partition_list_add(list, topic, msgs[i]->partition);
        if (msgs[i]->offset + 1 > tp->offset)
            tp->offset = msgs[i]->offset + 1;
    }
    err = rd_kafka_offsets_store(c->rk, list);
    /* Per-partition errors (partition revoked meanwhile) are expected during
     * a rebalance; the new owner redelivers and the inbox drops duplicates. */
    for (int i = 0; i < list->cnt; i++) {
        if (list->elems[i].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            of_log_ctx ctx = {
                NULL, NULL, list->elems[i].topic, list->elems[i].partition, list->elems[i].offset,
                NULL};
            of_log_write(OF_LOG_INFO, &ctx, "offset not stored: %s",
                         rd_kafka_err2str(list->elems[i].err));
        }
    }
    rd_kafka_topic_partition_list_destroy(list);
    return err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR__STATE ? OF_OK
                                                                                : OF_ETRANSIENT;
}

static void consumer_poll_closed(uv_handle_t *h)
{
    of_consumer *c = h->data;
    if (--c->pending_closes > 0)
        return;
    if (c->fds[0] >= 0)
        close(c->fds[0]);
    if (c->fds[1] >= 0)
        close(c->fds[1]);
    c->fds[0] = c->fds[1] = -1;
    if (c->close_cb != NULL)
        c->close_cb(c);
}

/* librdkafka before 2.3.0 asserts (abort) when it destroys a consumer whose
 * sticky assignor was selected by a JoinGroup but never received the
 * SyncGroup's assignment (its assignor state is still NULL; fixed upstream in
 * 2.3.0). A member stopped in that window, typically while the group waits
 * for a leader that was just killed, would die with SIGABRT on a clean
 * SIGTERM. Such a handle is closed (normally: it left the group) but not
 * destroyed: it stays reachable here until the process exits, which the
 * worker then does with _exit() (of_kafka_abandoned), so that no exit handler
 * runs beside its threads. Counted without a limit; the first few are kept. */
#define OF_MAX_ABANDONED 4
static rd_kafka_t *abandoned[OF_MAX_ABANDONED];
static size_t n_abandoned;

size_t of_kafka_abandoned(void)
{
    return n_abandoned;
}

/* Whether destroying c would hit that assertion: a sticky assignor, chosen
 * by a JoinGroup (the protocol is "NONE" before; once the group is left the
 * query returns NULL, so it is asked when the close starts), and no
 * assignment since. */
static bool destroy_would_abort(of_consumer *c)
{
    char strategy[128];
    size_t size = sizeof strategy;
    const char *protocol;
    if (c->synced || rd_kafka_version() >= 0x020300ff)
        return false;
    if (rd_kafka_conf_get(rd_kafka_conf(c->rk), "partition.assignment.strategy", strategy, &size) !=
            RD_KAFKA_CONF_OK ||
        strstr(strategy, "sticky") == NULL)
        return false;
    if (c->joined)
        return true;
    protocol = rd_kafka_rebalance_protocol(c->rk);
    return protocol != NULL && strcmp(protocol, "NONE") != 0;
}

static void consumer_close_handles(of_consumer *c)
{
    /* Held messages go before the handle they belong to. */
    (void)drop_held(c, NULL);
    free(c->held);
    c->held = NULL;
    c->cap_held = 0;
    if (c->queue != NULL) {
        rd_kafka_queue_destroy(c->queue);
        c->queue = NULL;
    }
    if (c->rk != NULL) {
        if (destroy_would_abort(c)) {
            of_log_warn("consumer stopped between joining the group and its first assignment; "
                        "its handle is left to the process exit (librdkafka %s would abort "
                        "destroying it)%s",
                        rd_kafka_version_str(),
                        rd_kafka_consumer_closed(c->rk) ? ""
                                                        : "; it did not leave the group, which "
                                                          "drops it after session.timeout.ms");
            if (n_abandoned < OF_MAX_ABANDONED)
                abandoned[n_abandoned] = c->rk;
            n_abandoned++;
        } else {
            rd_kafka_destroy(c->rk);
        }
        c->rk = NULL;
    }
    if (c->poll.data != NULL && !uv_is_closing((uv_handle_t *)&c->poll)) {
        c->pending_closes = 3;
        uv_close((uv_handle_t *)&c->close_timer, consumer_poll_closed);
        uv_close((uv_handle_t *)&c->serve_timer, consumer_poll_closed);
        uv_close((uv_handle_t *)&c->poll, consumer_poll_closed);
    } else if (c->poll.data == NULL) {
        c->poll.data = c;
        c->pending_closes = 1;
        consumer_poll_closed((uv_handle_t *)&c->poll);
    }
}

static void on_consumer_close_timer(uv_timer_t *t)
{
    of_consumer *c = t->data;
    if (c->rk != NULL)
        consumer_serve_close(c);
}

void of_consumer_close(of_consumer *c, void (*close_cb)(of_consumer *c))
{
    rd_kafka_error_t *error;
    if (c->closing)
        return;
    c->closing = true;
    c->close_cb = close_cb;
    if (c->rk != NULL) {
        const char *protocol = rd_kafka_rebalance_protocol(c->rk);
        c->joined = protocol != NULL && strcmp(protocol, "NONE") != 0;
    }
    if (c->rk == NULL || c->queue == NULL || c->poll.data == NULL) {
        consumer_close_handles(c);
        return;
    }
    /* Close through the consumer queue, whose pipe the loop already watches:
     * the rebalance (revoke) and the final commit are served in
     * consumer_serve_close() on later wakeups. */
    rd_kafka_queue_io_event_enable(c->queue, c->fds[1], "1", 1);
    error = rd_kafka_consumer_close_queue(c->rk, c->queue);
    if (error != NULL) {
        of_log_warn("could not close consumer cleanly: %s", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
        consumer_close_handles(c);
        return;
    }
    /* Closing may complete without any event reaching the queue (no group
     * joined yet), so the close is also served on a short timer. */
    uv_timer_start(&c->close_timer, on_consumer_close_timer, 20, 20);
    consumer_serve_close(c);
}
