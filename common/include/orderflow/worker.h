/* worker.h: the runtime every orderflow worker process runs.
 *
 * One libuv loop drives a Kafka consumer, a Kafka producer, two Postgres
 * connections (one for batches, one for the outbox relay and timers),
 * signals and timers. The worker supplies an of_worker_handler with its
 * machine's steps; the runtime does everything around them:
 *
 *   poll a batch -> parse envelopes -> handler decodes data
 *   -> pipeline 1: BEGIN, inbox check, handler's loads (rows locked)
 *   -> handler applies steps, appending effects, history, outbox rows
 *   -> pipeline 2: effects, inbox rows, dead letters, COMMIT
 *   -> offsets stored -> outbox rows published -> next batch
 *
 * Failures: a transient one (connection lost, deadlock, serialization)
 * rolls back and retries the batch after a capped exponential backoff; a
 * permanent one (constraint, bad data) splits the batch into one-event
 * transactions so that only the event at fault is dead-lettered and the rest
 * commit. Undecodable or invalid events are dead-lettered without touching
 * the others. Nothing is acknowledged to Kafka before its transaction commits.
 *
 * Observability: an HTTP endpoint on the same loop (http-address,
 * http-port; port 0 disables it) serves /healthz (200 while the loop runs),
 * /readyz (200 when the batch connection is ready, the consumer has
 * partitions or is polled and in its group, and no shutdown has begun; 503
 * with the reason otherwise) and /metrics (Prometheus text: events, outcomes,
 * dead letters, transitions, batch and transaction histograms, step latency,
 * retries, outbox, consumer lag, reconnects, build info). Handlers add their
 * own families to w->metrics in start(), and gauges fed by a query with
 * of_worker_gauge_query(). A port that cannot be bound is logged as an error
 * and the worker runs on without the endpoint.
 *
 * Ownership: the runtime owns items and their Kafka messages; handlers own
 * what they hang on item->user and release it in item_free. */
#ifndef ORDERFLOW_WORKER_H
#define ORDERFLOW_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "orderflow/config.h"
#include "orderflow/db.h"
#include "orderflow/event.h"
#include "orderflow/http.h"
#include "orderflow/kafka.h"
#include "orderflow/message.h"
#include "orderflow/metrics.h"
#include "orderflow/outbox.h"

typedef enum of_item_state {
    OF_ITEM_PENDING,   /* valid, to be applied */
    OF_ITEM_DUPLICATE, /* its ce_id was processed before: acknowledged, no effect */
    OF_ITEM_DEAD,      /* to be dead-lettered with err */
    OF_ITEM_DONE,      /* applied (or recorded as rejected/ignored) in this transaction */
} of_item_state;

/* One consumed record of a batch. */
typedef struct of_worker_item {
    rd_kafka_message_t *msg; /* the Kafka message (owned by the runtime) */
    of_record_view rec;      /* view of msg */
    of_header_view *headers; /* header views (owned) */
    of_event ev;             /* parsed envelope (valid unless DEAD before parsing) */
    bool parsed;             /* ev holds data to free */
    bool decoded;            /* the handler's decode accepted it (ev.type is one of its types) */
    of_item_state state;     /* what happens to it in this transaction */
    of_item_state initial;   /* state after decoding, restored when a transaction is retried */
    const char *dlq_code;    /* error code for the DLQ when not err.code's name, or NULL */
    of_event_error err;      /* reason when DEAD */
    const char *outcome;     /* short word for the log: "applied", "rejected", ... */
    void *user;              /* handler's decoded payload / per-item state */
} of_worker_item;

typedef struct of_worker of_worker;

/* An event to publish once its transaction commits. */
typedef struct of_worker_out {
    of_message m; /* the event (owned) */
    long
        cmd; /* -1: always; else publish only if command cmd of the write pipeline returned a row */
} of_worker_out;

/* The slice of a batch one transaction handles. */
typedef struct of_worker_batch {
    of_worker *w;                 /* runtime */
    of_worker_item *items;        /* every item of the polled batch */
    size_t n;                     /* number of items */
    size_t lo, hi;                /* items of the current transaction: [lo, hi) */
    struct of_worker_out *outbox; /* events written to the outbox by this transaction */
    size_t n_outbox;              /* used entries */
    size_t cap_outbox;            /* allocated entries */
} of_worker_batch;

/* What a worker brings: its name, topics, statements and steps. */
typedef struct of_worker_handler {
    const char *name;          /* worker name: group id, inbox consumer, ce_source suffix */
    const char *const *topics; /* topics to consume (before the prefix is applied) */
    size_t n_topics;           /* number of topics */
    const of_db_stmt *stmts;   /* statements to prepare on the batch connection */
    size_t n_stmts;            /* number of statements */
    /* Checks the event's type and data for this worker. Returns 0, or a
     * negative of_event_code with err set (the event is dead-lettered). May
     * set it->user. */
    int (*decode)(void *ctx, of_worker_item *it, of_event_error *err);
    /* Appends queries that read (and lock) what the PENDING items of
     * b->items[lo..hi) need. Returns 0 or a negative error (transient). */
    int (*load)(void *ctx, of_worker_batch *b, of_db_pipeline *p);
    /* Reads the load results (first_result is the index of the handler's
     * first command in lp) and appends the steps' effects to wp for every
     * PENDING item, setting each to DONE (or DEAD with err). Returns 0 or a
     * negative error (transient: the batch is retried). */
    int (*apply)(void *ctx, of_worker_batch *b, const of_db_pipeline *lp, size_t first_result,
                 of_db_pipeline *wp);
    /* Releases it->user; may be NULL. */
    void (*item_free)(void *ctx, of_worker_item *it);
    /* Called once the loop runs, e.g. to start timers; may be NULL. */
    int (*start)(void *ctx, of_worker *w);
    /* Called when shutdown begins; may be NULL. */
    void (*stop)(void *ctx, of_worker *w);
    void *ctx; /* handler state */
} of_worker_handler;

/* Settings shared by every worker (see of_worker_config_items). */
typedef struct of_worker_settings {
    char *database_url;     /* libpq URI */
    char *kafka_bootstrap;  /* bootstrap servers */
    char *group_id;         /* consumer group, default "orderflow-<worker>" */
    char *topic_prefix;     /* prefix for every topic name (tests), default "" */
    char *log_level;        /* debug, info, warn, error */
    int64_t batch_size;     /* max events per transaction */
    int64_t sweep_interval; /* ms between outbox sweeps */
    int64_t sweep_grace;    /* ms before the sweep considers a row stuck */
    int64_t retry_max;      /* ms, cap of the retry backoff */
    int64_t grace_period;   /* ms allowed for a graceful shutdown */
    char *http_address;     /* address of the health and metrics endpoint */
    int64_t http_port;      /* its port; 0 disables it */
} of_worker_settings;

struct of_worker {
    uv_loop_t *loop;             /* the process's loop */
    const of_worker_handler *h;  /* the worker's steps */
    of_worker_settings cfg;      /* settings */
    char source[96];             /* ce_source of published events: "orderflow/<name>" */
    of_db db;                    /* batch connection */
    of_db aux;                   /* outbox relay and timer connection */
    of_db_stmt *stmts;           /* all statements of the batch connection (owned) */
    of_consumer consumer;        /* Kafka consumer */
    of_producer producer;        /* Kafka producer */
    of_outbox_relay relay;       /* outbox relay */
    uv_signal_t sigterm, sigint; /* shutdown signals */
    uv_timer_t retry_timer;      /* batch retry backoff */
    uv_timer_t shutdown_timer;   /* grace period limit */
    uv_idle_t kick;              /* runs the next batch from a fresh loop iteration */
    of_worker_batch batch;       /* the batch in progress */
    bool busy;                   /* a batch is in progress */
    bool isolating;              /* running the batch one event per transaction */
    of_db_pipeline lp, wp;       /* load and write pipelines */
    uint64_t retry_ms;           /* next retry delay */
    bool stopping;               /* shutdown started */
    int exit_code;               /* process exit code */
    int closing;                 /* base handles still closing */
    int dbs_closed;              /* connections closed during shutdown (of 2) */
    bool producer_closed;        /* the producer is closed */
    uint64_t drain_deadline;     /* uv_now() limit for draining the relay */
    char topics[8][256];         /* prefixed topic names */
    of_metrics metrics;          /* registry served on /metrics (handlers may add families) */
    of_http http;                /* health and metrics endpoint */
    struct of_worker_obs *obs;   /* the runtime's metric families and probes (worker.c) */
    /* counters (metrics) */
    uint64_t n_batches, n_events, n_applied, n_duplicates, n_dead, n_retries;
};

/* The common settings as of_config_item initialisers, for a worker whose
 * settings struct TYPE holds an of_worker_settings in MEMBER:
 *     static const of_config_item items[] = { OF_WORKER_CONFIG(my_settings, w), ... };
 * An unset group id becomes "orderflow-<worker>". */
#define OF_WORKER_CFG_(type, member, field)                                                        \
    offsetof(type, member) + offsetof(of_worker_settings, field)
#define OF_WORKER_CONFIG(type, member)                                                             \
    {"database-url",                                                                               \
     "DATABASE_URL",                                                                               \
     "database-url",                                                                               \
     OF_CFG_SECRET,                                                                                \
     "postgresql://orderflow@127.0.0.1:25432/orderflow",                                           \
     "PostgreSQL connection URI",                                                                  \
     OF_WORKER_CFG_(type, member, database_url),                                                   \
     0,                                                                                            \
     -1},                                                                                          \
        {"kafka-bootstrap-servers",                                                                \
         "KAFKA_BOOTSTRAP_SERVERS",                                                                \
         "kafka-bootstrap-servers",                                                                \
         OF_CFG_STRING,                                                                            \
         "127.0.0.1:29092",                                                                        \
         "Kafka bootstrap servers (host:port,...)",                                                \
         OF_WORKER_CFG_(type, member, kafka_bootstrap),                                            \
         0,                                                                                        \
         -1},                                                                                      \
        {"group-id",                                                                               \
         "ORDERFLOW_GROUP_ID",                                                                     \
         "group-id",                                                                               \
         OF_CFG_STRING,                                                                            \
         NULL,                                                                                     \
         "Kafka consumer group (default orderflow-<worker>)",                                      \
         OF_WORKER_CFG_(type, member, group_id),                                                   \
         0,                                                                                        \
         -1},                                                                                      \
        {"topic-prefix",                                                                           \
         "ORDERFLOW_TOPIC_PREFIX",                                                                 \
         "topic-prefix",                                                                           \
         OF_CFG_STRING,                                                                            \
         "",                                                                                       \
         "prefix added to every topic name (isolated test runs)",                                  \
         OF_WORKER_CFG_(type, member, topic_prefix),                                               \
         0,                                                                                        \
         -1},                                                                                      \
        {"log-level",                                                                              \
         "LOG_LEVEL",                                                                              \
         "log-level",                                                                              \
         OF_CFG_STRING,                                                                            \
         "info",                                                                                   \
         "debug, info, warn or error",                                                             \
         OF_WORKER_CFG_(type, member, log_level),                                                  \
         0,                                                                                        \
         -1},                                                                                      \
        {"batch-size",                                                                             \
         "ORDERFLOW_BATCH_SIZE",                                                                   \
         "batch-size",                                                                             \
         OF_CFG_INT,                                                                               \
         "200",                                                                                    \
         "most events handled in one transaction",                                                 \
         OF_WORKER_CFG_(type, member, batch_size),                                                 \
         1,                                                                                        \
         5000},                                                                                    \
        {"outbox-sweep-interval",                                                                  \
         "ORDERFLOW_OUTBOX_SWEEP_INTERVAL",                                                        \
         "outbox-sweep-interval",                                                                  \
         OF_CFG_MS,                                                                                \
         "5s",                                                                                     \
         "time between sweeps for unpublished outbox rows",                                        \
         OF_WORKER_CFG_(type, member, sweep_interval),                                             \
         100,                                                                                      \
         3600000},                                                                                 \
        {"outbox-sweep-grace",                                                                     \
         "ORDERFLOW_OUTBOX_SWEEP_GRACE",                                                           \
         "outbox-sweep-grace",                                                                     \
         OF_CFG_MS,                                                                                \
         "10s",                                                                                    \
         "age after which an unpublished outbox row is republished by the sweep",                  \
         OF_WORKER_CFG_(type, member, sweep_grace),                                                \
         0,                                                                                        \
         3600000},                                                                                 \
        {"retry-max",                                                                              \
         "ORDERFLOW_RETRY_MAX",                                                                    \
         "retry-max",                                                                              \
         OF_CFG_MS,                                                                                \
         "30s",                                                                                    \
         "cap of the exponential backoff for transient failures",                                  \
         OF_WORKER_CFG_(type, member, retry_max),                                                  \
         100,                                                                                      \
         3600000},                                                                                 \
        {"grace-period",                                                                           \
         "ORDERFLOW_GRACE_PERIOD",                                                                 \
         "grace-period",                                                                           \
         OF_CFG_MS,                                                                                \
         "25s",                                                                                    \
         "time allowed to drain and exit on SIGTERM",                                              \
         OF_WORKER_CFG_(type, member, grace_period),                                               \
         1000,                                                                                     \
         3600000},                                                                                 \
        {"http-address",                                                                           \
         "ORDERFLOW_HTTP_ADDRESS",                                                                 \
         "http-address",                                                                           \
         OF_CFG_STRING,                                                                            \
         "0.0.0.0",                                                                                \
         "address of the /healthz, /readyz and /metrics endpoint",                                 \
         OF_WORKER_CFG_(type, member, http_address),                                               \
         0,                                                                                        \
         -1},                                                                                      \
    {                                                                                              \
        "http-port", "ORDERFLOW_HTTP_PORT", "http-port", OF_CFG_INT, "8080",                       \
            "port of the /healthz, /readyz and /metrics endpoint (0 disables it)",                 \
            OF_WORKER_CFG_(type, member, http_port), 0, 65535                                      \
    }

/* Runs the worker until SIGTERM/SIGINT and a graceful drain; returns the
 * process exit code. cfg is taken over (freed by the runtime). */
int of_worker_run(const of_worker_handler *h, of_worker_settings *cfg);

/* Returns the prefixed name of a topic, for handlers that publish. */
const char *of_worker_topic(of_worker *w, const char *topic, char *buf, size_t size);

/* For handlers' apply: appends m's outbox INSERT to wp and keeps m (taken
 * over, m is zeroed) to publish after commit. */
int of_worker_emit(of_worker_batch *b, of_db_pipeline *wp, of_message *m)
    __attribute__((warn_unused_result));

/* For handlers' start: registers a gauge (no labels) set from the first
 * column of the first row of sql, run every 5 s on the relay connection
 * with the outbox backlog query (keep it cheap). name and help are copied,
 * sql must be static. Returns 0 or -1 (bad name, too many queries, memory). */
int of_worker_gauge_query(of_worker *w, const char *name, const char *help, const char *sql)
    __attribute__((warn_unused_result));

#endif
