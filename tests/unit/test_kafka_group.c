/* test_kafka_group.c: unit tests of the consumer in its group against
 * librdkafka's built-in mock cluster: a consumer busy past
 * max.poll.interval.ms still serves the group, and a consumer closed before
 * its first assignment closes cleanly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mock_run.h"
#include "orderflow/log.h"

/* A consumer busy with one batch for longer than max.poll.interval.ms. */
#define WAVE2             30    /* messages sent once a has its partitions back (3 per key) */
#define BUSY_MS           12000 /* how long the first batch takes */
#define BUSY_BATCH        20    /* messages in the first batch */
#define JOIN_AFTER_MS     1500  /* when the second consumer joins */
#define SERVE_DEADLINE_MS 60000

typedef struct serve_run {
    run *r;                                /* mock cluster, loop, producer */
    of_consumer a, b;                      /* the busy consumer and the one joining */
    bool a_open, b_open;                   /* started (and not yet closed) */
    int closed;                            /* consumers closed */
    bool busy, busy_over;                  /* a's first batch in progress / finished */
    rd_kafka_message_t *batch[BUSY_BATCH]; /* a's first batch */
    size_t n_batch;                        /* its size */
    bool in_batch[N_MSGS];                 /* message i was in a's first batch */
    int seen[N_MSGS];                      /* times message i was consumed (a and b) */
    int a_assigned, a_revoked;             /* partitions assigned to a, revoked from a */
    int a_revoked_busy;                    /* of those, revoked while a's batch ran */
    int a_revoked_open;                    /* revoked before the consumers closed */
    int b_assigned;                        /* partitions assigned to b */
    bool b_left;                           /* b closed: its partitions go back to a */
    int a_assigned_open;                   /* assigned to a before b left */
    int a_back;                            /* partitions assigned to a after b left */
    unsigned back_mask;                    /* which partitions those were */
    bool wave2_sent;                       /* the second wave went out */
    bool wave2_seen[WAVE2];                /* a consumed second-wave message i */
    unsigned wave2_mask;                   /* partitions a consumed second-wave messages on */
    uv_timer_t busy_timer, join_timer;     /* end a's batch; start b */
    uv_timer_t phase_timer;                /* runs the phase check after a rebalance callback */
} serve_run;

static int message_seq(const rd_kafka_message_t *m)
{
    char value[32];
    int seq;
    if (m->len == 0 || m->len >= sizeof value)
        return -1;
    memcpy(value, m->payload, m->len);
    value[m->len] = '\0';
    return sscanf(value, "msg-%d", &seq) == 1 && seq >= 0 && seq < N_MSGS ? seq : -1;
}

static void serve_maybe_done(serve_run *s);

static void serve_on_phase(uv_timer_t *t)
{
    serve_maybe_done(t->data);
}
static void serve_on_busy_over(uv_timer_t *t);
static void serve_on_join(uv_timer_t *t);

/* The index of a second-wave message ("w2-<i>"), or -1. */
static int wave2_seq(const rd_kafka_message_t *m)
{
    char value[32];
    int seq;
    if (m->len == 0 || m->len >= sizeof value)
        return -1;
    memcpy(value, m->payload, m->len);
    value[m->len] = '\0';
    return sscanf(value, "w2-%d", &seq) == 1 && seq >= 0 && seq < WAVE2 ? seq : -1;
}

/* Consumes whatever c has now, storing each offset at once. */
static void serve_drain(serve_run *s, of_consumer *c)
{
    rd_kafka_message_t *msgs[32];
    for (;;) {
        size_t n = of_consumer_poll(c, msgs, 32);
        if (n == 0)
            break;
        for (size_t i = 0; i < n; i++) {
            int seq = message_seq(msgs[i]), w2 = wave2_seq(msgs[i]);
            if (seq >= 0)
                s->seen[seq]++;
            if (w2 >= 0 && c == &s->a) {
                s->wave2_seen[w2] = true;
                s->wave2_mask |= 1u << msgs[i]->partition;
            }
        }
        (void)of_consumer_store(c, msgs, n);
        for (size_t i = 0; i < n; i++)
            rd_kafka_message_destroy(msgs[i]);
    }
    serve_maybe_done(s);
}

static void serve_on_wakeup_a(of_consumer *c, void *arg)
{
    serve_run *s = arg;
    if (s->busy)
        return; /* as the worker: one batch at a time, no polling meanwhile */
    if (!s->busy_over) {
        s->n_batch = of_consumer_poll(c, s->batch, BUSY_BATCH);
        if (s->n_batch == 0)
            return;
        for (size_t i = 0; i < s->n_batch; i++) {
            int seq = message_seq(s->batch[i]);
            if (seq >= 0) {
                s->seen[seq]++;
                s->in_batch[seq] = true;
            }
        }
        s->busy = true;
        of_consumer_set_busy(c, true);
        uv_timer_start(&s->busy_timer, serve_on_busy_over, BUSY_MS, 0);
        uv_timer_start(&s->join_timer, serve_on_join, JOIN_AFTER_MS, 0);
        return;
    }
    serve_drain(s, c);
}

static void serve_on_wakeup_b(of_consumer *c, void *arg)
{
    serve_drain(arg, c);
}

static void serve_on_rebalance_a(of_consumer *c, bool assigned,
                                 const rd_kafka_topic_partition_list_t *parts, void *arg)
{
    serve_run *s = arg;
    if (assigned) {
        s->a_assigned += parts->cnt;
        if (s->b_left) {
            s->a_back += parts->cnt;
            for (int i = 0; i < parts->cnt; i++)
                s->back_mask |= 1u << parts->elems[i].partition;
        }
    } else {
        s->a_revoked += parts->cnt;
        if (s->busy)
            s->a_revoked_busy += parts->cnt;
    }
    /* The next phase may close a consumer: not from inside its rebalance callback. */
    if (!s->r->closing)
        uv_timer_start(&s->phase_timer, serve_on_phase, 0, 0);
}

static void serve_on_rebalance_b(of_consumer *c, bool assigned,
                                 const rd_kafka_topic_partition_list_t *parts, void *arg)
{
    serve_run *s = arg;
    if (assigned)
        s->b_assigned += parts->cnt;
}

static void serve_on_closed(of_consumer *c)
{
    serve_run *s = c->arg;
    s->closed++;
}

static void serve_close_all(serve_run *s)
{
    run *r = s->r;
    if (r->closing)
        return;
    r->closing = true;
    uv_timer_stop(&r->deadline);
    uv_close((uv_handle_t *)&r->deadline, NULL);
    if (!uv_is_closing((uv_handle_t *)&r->sender))
        uv_close((uv_handle_t *)&r->sender, NULL);
    uv_close((uv_handle_t *)&s->busy_timer, NULL);
    uv_close((uv_handle_t *)&s->join_timer, NULL);
    uv_close((uv_handle_t *)&s->phase_timer, NULL);
    if (s->a_open)
        of_consumer_close(&s->a, serve_on_closed);
    if (s->b_open)
        of_consumer_close(&s->b, serve_on_closed);
    of_producer_close(&r->prod, CLOSE_WAIT_MS, on_prod_closed);
}

static void serve_send_wave2(serve_run *s)
{
    for (int i = 0; i < WAVE2; i++) {
        of_message m;
        char value[16];
        make_message(&m, s->r, i);
        snprintf(value, sizeof value, "w2-%d", i);
        free(m.value);
        m.value = strdup(value);
        assert_non_null(m.value);
        m.value_len = strlen(value);
        if (of_producer_send(&s->r->prod, &m, (void *)(uintptr_t)(N_MSGS + 1 + i)) != 0)
            s->r->send_errors++;
        of_message_free(&m);
    }
    s->wave2_sent = true;
}

/* Phases: every first-wave message consumed after a's batch: b leaves; its
 * partitions back with a (not busy now): the second wave goes out; all of
 * it consumed by a: the end. */
static void serve_maybe_done(serve_run *s)
{
    if (!s->busy_over)
        return;
    for (int i = 0; i < N_MSGS; i++)
        if (s->seen[i] == 0)
            return;
    if (!s->b_left) {
        s->b_left = true;
        s->a_revoked_open = s->a_revoked;
        s->a_assigned_open = s->a_assigned;
        s->b_open = false;
        of_consumer_close(&s->b, serve_on_closed);
        return;
    }
    if (!s->wave2_sent) {
        if (s->a_back >= s->a_revoked_open)
            serve_send_wave2(s);
        return;
    }
    for (int i = 0; i < WAVE2; i++)
        if (!s->wave2_seen[i])
            return;
    serve_close_all(s);
}

static void serve_start(serve_run *s, of_consumer *c, of_consumer_wakeup_cb wakeup,
                        of_consumer_rebalance_cb rebalance, const char *client)
{
    char errstr[512];
    const char *topics[1] = {s->r->topic};
    rd_kafka_conf_t *conf = of_kafka_conf_new(s->r->bootstraps, client, errstr, sizeof errstr);
    if (conf == NULL)
        fail_msg("could not configure consumer: %s", errstr);
    assert_int_equal(
        of_consumer_init(c, &s->r->loop, conf, s->r->group, topics, 1, wakeup, rebalance, s), 0);
}

/* a's batch is over: its offsets are stored (those of partitions a gave
 * away meanwhile are refused). */
static void serve_on_busy_over(uv_timer_t *t)
{
    serve_run *s = t->data;
    (void)of_consumer_store(&s->a, s->batch, s->n_batch);
    for (size_t i = 0; i < s->n_batch; i++)
        rd_kafka_message_destroy(s->batch[i]);
    s->n_batch = 0;
    s->busy = false;
    s->busy_over = true;
    of_consumer_set_busy(&s->a, false);
    serve_drain(s, &s->a);
}

static void serve_on_join(uv_timer_t *t)
{
    serve_run *s = t->data;
    serve_start(s, &s->b, serve_on_wakeup_b, serve_on_rebalance_b, "test-consumer-b");
    s->b_open = true;
}

static void serve_on_delivery(of_producer *p, void *opaque, rd_kafka_resp_err_t err, void *arg)
{
    serve_run *s = arg;
    s->r->delivered++;
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
        s->r->dr_errors++;
    if (s->r->delivered == N_MSGS && !s->a_open) {
        /* Everything is in the topic: a starts; b joins while a is busy. */
        serve_start(s, &s->a, serve_on_wakeup_a, serve_on_rebalance_a, "test-consumer-a");
        s->a_open = true;
    }
}

static void serve_on_deadline(uv_timer_t *t)
{
    serve_run *s = t->data;
    s->r->timed_out = true;
    serve_close_all(s);
}

/* A batch that takes longer than max.poll.interval.ms (a database outage):
 * the busy consumer pauses fetching and keeps serving the group, so it is
 * not evicted, and the rebalance of a consumer that joins meanwhile goes on
 * (the mock coordinator finishes it only after the batch; the integration
 * test shows it finishing during an outage on the real broker). Nothing is lost; a message is
 * consumed twice only if it was in the busy batch and its partition moved (the inbox's case).
 * Then b leaves and the partitions a gave away while paused come back to it: they must be
 * fetched again (librdkafka keeps a partition's pause flag across revoke and assign; the chaos
 * harness found such a partition never fetched again, seed 11). */
static void test_busy_consumer_serves_group(void **state)
{
    char errstr[512];
    serve_run *s = calloc(1, sizeof *s);
    assert_non_null(s);
    s->r = run_new("busy");
    run *r = s->r;
    setenv("KAFKA_SESSION_TIMEOUT_MS", "6000", 1);
    setenv("KAFKA_HEARTBEAT_INTERVAL_MS", "500", 1);
    setenv("KAFKA_MAX_POLL_INTERVAL_MS", "7000", 1);
    rd_kafka_conf_t *conf =
        of_kafka_conf_new(r->bootstraps, "test-producer", errstr, sizeof errstr);
    if (conf == NULL)
        fail_msg("could not configure producer: %s", errstr);
    assert_int_equal(of_producer_init(&r->prod, &r->loop, conf, serve_on_delivery, s), 0);
    assert_int_equal(uv_timer_init(&r->loop, &s->busy_timer), 0);
    assert_int_equal(uv_timer_init(&r->loop, &s->join_timer), 0);
    assert_int_equal(uv_timer_init(&r->loop, &s->phase_timer), 0);
    s->busy_timer.data = s->join_timer.data = s->phase_timer.data = s;
    r->deadline.data = s;
    assert_int_equal(uv_timer_start(&r->sender, on_send_wave, 0, WAVE_MS), 0);
    assert_int_equal(uv_timer_start(&r->deadline, serve_on_deadline, SERVE_DEADLINE_MS, 0), 0);
    assert_int_equal(uv_run(&r->loop, UV_RUN_DEFAULT), 0);
    unsetenv("KAFKA_SESSION_TIMEOUT_MS");
    unsetenv("KAFKA_HEARTBEAT_INTERVAL_MS");
    unsetenv("KAFKA_MAX_POLL_INTERVAL_MS");

    assert_false(r->timed_out);
    assert_int_equal(r->dr_errors, 0);
    assert_int_equal(s->closed, 2);
    /* a paused and kept serving the group through its long batch: the
     * rebalance b's join started revoked partitions from a while the batch
     * ran (the revoke callback runs only from a poll). a was never evicted:
     * an evicted member loses its whole assignment and joins again, so a
     * was assigned once, and lost before the close only what b got. */
    assert_true(s->a_revoked_busy >= 1);
    assert_int_equal(s->a_assigned_open, N_PARTS);
    assert_true(s->b_assigned >= 1);
    assert_int_equal(s->a_revoked_open, s->b_assigned);
    assert_true(s->a.n_pauses >= 1);
    /* What a gave away came back, and a consumed the second wave on each of those partitions. */
    assert_int_equal(s->a_back, s->a_revoked_open);
    for (int i = 0; i < WAVE2; i++)
        if (!s->wave2_seen[i])
            fail_msg("second-wave message %d never consumed by a", i);
    assert_int_equal(s->back_mask & ~s->wave2_mask, 0);
    for (int i = 0; i < N_MSGS; i++) {
        if (s->seen[i] == 0)
            fail_msg("message %d never consumed", i);
        if (s->seen[i] > 1 && !s->in_batch[i])
            fail_msg("message %d consumed %d times but was not in the busy batch", i, s->seen[i]);
    }
    assert_int_equal(uv_loop_close(&r->loop), 0);
    run_free(r);
    free(s);
}

/* A consumer stopped after the JoinGroup chose its (cooperative-sticky)
 * assignor but before the SyncGroup brought its first assignment, as when
 * the group waits for a leader that was just killed: librdkafka before 2.3.0
 * aborted in rd_kafka_destroy() (assignor state NULL). The close must finish
 * and the process go on. The mock coordinator holds the SyncGroup response
 * for EARLY_SYNC_DELAY_MS; the consumer is closed as soon as it has joined. */
#define API_SYNC_GROUP      14 /* Kafka protocol ApiKey of SyncGroupRequest */
#define EARLY_SYNC_DELAY_MS 4000

typedef struct early_run {
    run *r;
    of_consumer c;
    uv_timer_t watch;  /* looks for the joined state */
    bool closing;      /* close started */
    bool closed;       /* close callback ran */
    int assigned;      /* partitions assigned (must stay 0) */
    char protocol[32]; /* rebalance protocol when the close started */
} early_run;

static void early_on_wakeup(of_consumer *c, void *arg)
{
    rd_kafka_message_t *msgs[8];
    size_t n = of_consumer_poll(c, msgs, 8);
    for (size_t i = 0; i < n; i++)
        rd_kafka_message_destroy(msgs[i]);
}

static void early_on_rebalance(of_consumer *c, bool assigned,
                               const rd_kafka_topic_partition_list_t *parts, void *arg)
{
    early_run *e = arg;
    if (assigned)
        e->assigned += parts->cnt;
}

static void early_on_closed(of_consumer *c)
{
    early_run *e = c->arg;
    e->closed = true;
}

static void early_close(early_run *e)
{
    e->closing = true;
    uv_timer_stop(&e->watch);
    uv_close((uv_handle_t *)&e->watch, NULL);
    uv_timer_stop(&e->r->deadline);
    uv_close((uv_handle_t *)&e->r->deadline, NULL);
    uv_close((uv_handle_t *)&e->r->sender, NULL);
    of_consumer_close(&e->c, early_on_closed);
}

static void early_on_watch(uv_timer_t *t)
{
    early_run *e = t->data;
    const char *protocol = rd_kafka_rebalance_protocol(e->c.rk);
    if (e->closing || protocol == NULL || strcmp(protocol, "NONE") == 0)
        return;
    snprintf(e->protocol, sizeof e->protocol, "%s", protocol);
    early_close(e);
}

static void early_on_deadline(uv_timer_t *t)
{
    early_run *e = t->data;
    e->r->timed_out = true;
    if (!e->closing)
        early_close(e);
}

static void test_close_before_first_assignment(void **state)
{
    char errstr[512];
    const char *topics[1];
    early_run *e = calloc(1, sizeof *e);
    assert_non_null(e);
    e->r = run_new("early");
    run *r = e->r;
    topics[0] = r->topic;
    assert_int_equal(rd_kafka_mock_coordinator_set(r->mcluster, "group", r->group, 1),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(rd_kafka_mock_broker_push_request_error_rtts(r->mcluster, 1, API_SYNC_GROUP, 1,
                                                                  RD_KAFKA_RESP_ERR_NO_ERROR,
                                                                  EARLY_SYNC_DELAY_MS),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_conf_t *conf = of_kafka_conf_new(r->bootstraps, "test-early", errstr, sizeof errstr);
    if (conf == NULL)
        fail_msg("could not configure consumer: %s", errstr);
    assert_int_equal(of_consumer_init(&e->c, &r->loop, conf, r->group, topics, 1, early_on_wakeup,
                                      early_on_rebalance, e),
                     0);
    assert_int_equal(uv_timer_init(&r->loop, &e->watch), 0);
    e->watch.data = e;
    r->deadline.data = e;
    assert_int_equal(uv_timer_start(&e->watch, early_on_watch, 5, 5), 0);
    assert_int_equal(uv_timer_start(&r->deadline, early_on_deadline, DEADLINE_MS, 0), 0);
    assert_int_equal(uv_run(&r->loop, UV_RUN_DEFAULT), 0);

    assert_false(r->timed_out);
    assert_string_equal(e->protocol, "COOPERATIVE");
    assert_int_equal(e->assigned, 0);
    assert_false(e->c.synced);
    assert_true(e->closed);
    /* The workaround's branch was taken exactly where it is needed. */
    assert_int_equal(of_kafka_abandoned(), rd_kafka_version() < 0x020300ff ? 1 : 0);
    assert_int_equal(uv_loop_close(&r->loop), 0);
    /* Not run_free(): with librdkafka before 2.3.0 the consumer's handle is
     * deliberately left to the process exit, so not every handle is gone.
     * This test runs last for that reason. */
    rd_kafka_mock_cluster_destroy(r->mcluster);
    rd_kafka_destroy(r->mock_rk);
    free(r);
    free(e);
}

int main(void)
{
    of_log_init("test_kafka_group");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_busy_consumer_serves_group),
        /* Last: it may leave a consumer handle to the process exit. */
        cmocka_unit_test(test_close_before_first_assignment),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
