/* kafka.h: librdkafka consumer and producer driven by the libuv loop.
 *
 * Each rd_kafka_t's event queue is given an io-event pipe
 * (rd_kafka_queue_io_event_enable); a uv_poll_t on the pipe's read end tells
 * the loop when the queue has something, and the loop then serves it without
 * blocking. The consumer never commits on its own behalf: auto offset store
 * is off, so an offset is stored (and later auto-committed) only when the
 * caller says its effects are durable (of_consumer_store). The producer is
 * idempotent (acks=all, ordered, no duplicates on retry).
 *
 * Settings: bootstrap servers and client id are explicit; any environment
 * variable KAFKA_<NAME> other than KAFKA_BOOTSTRAP_SERVERS is passed to
 * librdkafka as <name> lowercased with '_' -> '.', e.g.
 * KAFKA_SECURITY_PROTOCOL=SASL_SSL -> security.protocol=SASL_SSL. Values are
 * never logged (they may hold passwords).
 *
 * A consumer whose caller takes long over one batch (a slow or absent
 * database) still serves its group: the caller says when a batch is in
 * progress (of_consumer_set_busy), and once one has run for
 * OF_CONSUMER_SERVE_AFTER_MS the consumer pauses fetching for its whole
 * assignment and polls every OF_CONSUMER_SERVE_EVERY_MS. Polling answers
 * rebalances (a joining replica gets its partitions, revoked ones are
 * given up) and keeps the member within max.poll.interval.ms, so no replica
 * is evicted for a slow database. Messages that polling returns are held,
 * in order, and come first from the next of_consumer_poll(), which also
 * resumes fetching; held messages of a partition revoked meanwhile are
 * dropped (their offsets were never stored; the new owner reads them).
 *
 * Ownership: the caller owns the structs; messages returned by
 * of_consumer_poll() are the caller's to rd_kafka_message_destroy(). */
#ifndef ORDERFLOW_KAFKA_H
#define ORDERFLOW_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "orderflow/error.h"
#include "orderflow/message.h"

/* A batch in progress this long makes the consumer pause and serve its group. */
#define OF_CONSUMER_SERVE_AFTER_MS 1000
/* How often a paused consumer polls (far below any max.poll.interval.ms);
 * an idle consumer that has not polled for OF_CONSUMER_SERVE_AFTER_MS has its
 * wakeup callback called, so that it polls too. */
#define OF_CONSUMER_SERVE_EVERY_MS 500

/* Builds a configuration with orderflow's defaults for role ("consumer" or
 * "producer"), the logger wired in, and the KAFKA_* environment applied.
 * Returns NULL and writes errstr on a bad setting. Caller owns the result
 * until it is passed to rd_kafka_new(). */
rd_kafka_conf_t *of_kafka_conf_new(const char *bootstrap, const char *client_id, char *errstr,
                                   size_t errstr_size);

typedef struct of_consumer of_consumer;
/* Called when the consumer queue may have messages or events. */
typedef void (*of_consumer_wakeup_cb)(of_consumer *c, void *arg);
/* Called after partitions were assigned (assigned=true) or revoked. */
typedef void (*of_consumer_rebalance_cb)(of_consumer *c, bool assigned,
                                         const rd_kafka_topic_partition_list_t *parts, void *arg);

struct of_consumer {
    rd_kafka_t *rk;                     /* consumer handle */
    rd_kafka_queue_t *queue;            /* consumer queue (main queue forwarded to it) */
    int fds[2];                         /* io-event pipe: [0] watched, [1] written by librdkafka */
    uv_poll_t poll;                     /* watcher on fds[0] */
    uv_timer_t close_timer;             /* serves the close, which may finish without an event */
    int pending_closes;                 /* handles still closing */
    of_consumer_wakeup_cb wakeup;       /* caller's wakeup callback */
    of_consumer_rebalance_cb rebalance; /* caller's rebalance callback, or NULL */
    void *arg;                          /* argument for the callbacks */
    bool closing;                       /* of_consumer_close() started */
    void (*close_cb)(of_consumer *c);   /* called when fully closed */
    uint64_t assigned_partitions;       /* count currently assigned (metrics) */
    uv_timer_t serve_timer;             /* serves the group while a batch runs long */
    bool busy;                          /* the caller has a batch in progress */
    uint64_t busy_since;                /* uv_now() when it started */
    uint64_t polled_at;                 /* uv_now() of the last poll of the queue */
    bool paused;                        /* fetching paused for the assignment */
    uint64_t paused_at;                 /* uv_now() when fetching was paused */
    rd_kafka_message_t **held;          /* polled while paused, delivered first */
    size_t n_held, cap_held;            /* held messages, capacity of held */
    uint64_t n_pauses;                  /* times fetching was paused (metrics) */
    bool fatal;                         /* librdkafka raised a fatal error: unusable */
    void (*on_fatal)(of_consumer *c);   /* called once on a fatal error, or NULL */
    bool synced;                        /* an assignment came from the group (see close) */
    bool joined;                        /* a JoinGroup had chosen the assignor at the close */
};

/* Creates the consumer (takes ownership of conf, also on failure) for group,
 * subscribes to topics and starts watching. */
int of_consumer_init(of_consumer *c, uv_loop_t *loop, rd_kafka_conf_t *conf, const char *group,
                     const char *const *topics, size_t n_topics, of_consumer_wakeup_cb wakeup,
                     of_consumer_rebalance_cb rebalance, void *arg)
    __attribute__((warn_unused_result));
/* Consumer handles closed but left to the process exit because destroying
 * them would abort (librdkafka before 2.3.0, see kafka_consumer.c); the process should
 * then end with _exit(). */
size_t of_kafka_abandoned(void);
/* Takes up to max messages without blocking, held ones first (resuming
 * fetching if it was paused); error events are logged and not returned.
 * Returns the number of messages placed in msgs. */
size_t of_consumer_poll(of_consumer *c, rd_kafka_message_t **msgs, size_t max);
/* The caller starts (busy) or ends a batch; see the serving described above. */
void of_consumer_set_busy(of_consumer *c, bool busy);
/* Stores offset+1 of each message (the next to read) for commit. Messages of
 * partitions no longer assigned are skipped: their new owner will redeliver
 * and the inbox will drop the duplicates. Returns 0 or OF_ETRANSIENT. */
int of_consumer_store(of_consumer *c, rd_kafka_message_t *const *msgs, size_t n);
/* Leaves the group without blocking the loop (rd_kafka_consumer_close_queue),
 * commits stored offsets, then destroys the handle and calls close_cb. */
void of_consumer_close(of_consumer *c, void (*close_cb)(of_consumer *c));

typedef struct of_producer of_producer;
/* Delivery report for one message; err is RD_KAFKA_RESP_ERR_NO_ERROR on success. */
typedef void (*of_producer_dr_cb)(of_producer *p, void *msg_opaque, rd_kafka_resp_err_t err,
                                  void *arg);

struct of_producer {
    rd_kafka_t *rk;                   /* producer handle */
    rd_kafka_queue_t *queue;          /* main queue (delivery reports, logs, errors) */
    int fds[2];                       /* io-event pipe */
    uv_poll_t poll;                   /* watcher on fds[0] */
    uv_timer_t timer;                 /* serves the queue periodically while closing */
    of_producer_dr_cb dr;             /* delivery callback */
    void *arg;                        /* argument for dr */
    bool closing;                     /* of_producer_close() started */
    uint64_t close_deadline;          /* uv_now() limit for flushing at close */
    int64_t message_timeout_ms;       /* message.timeout.ms in effect: the longest a
                                         message is in flight before its report */
    bool fatal;                       /* librdkafka raised a fatal error: unusable */
    void (*on_fatal)(of_producer *p); /* called once on a fatal error, or NULL */
    int pending_closes;               /* handles still closing */
    void (*close_cb)(of_producer *p); /* called when fully closed */
};

/* Creates an idempotent producer (takes ownership of conf, also on failure). */
int of_producer_init(of_producer *p, uv_loop_t *loop, rd_kafka_conf_t *conf, of_producer_dr_cb dr,
                     void *arg) __attribute__((warn_unused_result));
/* Enqueues a copy of m (topic, key, value, headers); opaque comes back in the
 * delivery report. Returns 0 or a negative rd_kafka_resp_err_t. */
int of_producer_send(of_producer *p, const of_message *m, void *opaque)
    __attribute__((warn_unused_result));
/* Messages not yet delivered. */
int of_producer_outq_len(of_producer *p);
/* Waits (on the loop) up to timeout_ms for outstanding deliveries, then
 * destroys the producer and calls close_cb. */
void of_producer_close(of_producer *p, uint64_t timeout_ms, void (*close_cb)(of_producer *p));

/* Creates topics (already existing ones are fine). Blocking: for CLIs and
 * tests only, never inside a worker's loop. Returns 0 or OF_ESTART with errstr set. */
int of_kafka_create_topics(const char *bootstrap, const char *const *topics, size_t n,
                           int partitions, int timeout_ms, char *errstr, size_t errstr_size)
    __attribute__((warn_unused_result));

#endif
