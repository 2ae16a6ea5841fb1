/* worker.h: the runtime every orderflow worker process runs.
 *
 * One libuv loop drives a Kafka consumer, a Kafka producer, two Postgres
 * connections (one for batches, one for the outbox relay and timers),
 * signals and timers. The worker brings its machine, the steps it runs of
 * that machine, its SQL and three small functions (decode, route and,
 * optionally, load/prepare for what its steps read); the runtime does the
 * rest, one polled batch per transaction:
 *
 *   poll a batch -> parse envelopes -> decode -> route (what each event asks)
 *   -> pipeline 1: BEGIN, inbox check, the machine's entities (locked),
 *      the worker's loads
 *   -> per event: find its entity (unknown -> dead letter), the auto-advance
 *      rule, the version check, of_machine_apply (step, status, execution,
 *      history, status event) or a rejected/ignored history row; the entity
 *      advances in memory for later events of the batch
 *   -> pipeline 2: effects, inbox rows, dead letters, COMMIT
 *   -> offsets stored -> outbox rows published -> next batch
 *
 * Failures (see docs/architecture.md): every record ends applied, recorded
 * as a no-op, or dead-lettered. A transient failure (of_err_transient, a
 * transient SQLSTATE) rolls back and retries after a capped exponential
 * backoff; after retry-limit such failures the batch runs one event per
 * transaction and a single event that still fails is dead-lettered as
 * RETRIES_EXHAUSTED. A lost connection is waited out without counting. A
 * permanent failure of one event's step dead-letters that event and the
 * batch runs again without it; a permanent SQL failure splits the batch
 * into one-event transactions so that only the event at fault is
 * dead-lettered. A dead letter that cannot be stored as it is (bytes that
 * are no text) is stored in an escaped form with the original bytes kept.
 * Nothing is acknowledged to Kafka before its transaction commits.
 *
 * Retention (prune.h): every prune-interval a pruner on the relay
 * connection deletes, batch by batch, this worker's inbox rows and
 * redriven dead letters, published outbox rows and, when asked for,
 * finished executions past their retention; a handler adds its domain's
 * targets with of_worker_prune_add() in its start.
 *
 * Observability (worker_obs.c): /healthz, /readyz (not ready while
 * shutting down, without the batch connection, without partitions, or when
 * a batch has gone stall-timeout without a commit) and /metrics.
 *
 * Ownership: the runtime owns items and their Kafka messages; handlers own
 * what they hang on item->user and release it in item_free, and their
 * batch state, released in release. */
#ifndef ORDERFLOW_WORKER_H
#define ORDERFLOW_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "orderflow/config.h"
#include "orderflow/db.h"
#include "orderflow/error.h"
#include "orderflow/event.h"
#include "orderflow/http.h"
#include "orderflow/kafka.h"
#include "orderflow/machine.h"
#include "orderflow/message.h"
#include "orderflow/metrics.h"
#include "orderflow/outbox.h"
#include "orderflow/prune.h"

typedef enum of_item_state {
    OF_ITEM_PENDING,   /* valid, to be applied */
    OF_ITEM_DUPLICATE, /* its ce_id was processed before: acknowledged, no effect */
    OF_ITEM_DEAD,      /* to be dead-lettered with err */
    OF_ITEM_DONE,      /* applied (or recorded as rejected/ignored) in this transaction */
    OF_ITEM_PARKED,    /* kept in parked_events behind its key (park.c), to be replayed */
} of_item_state;

/* What an event asks of the worker's machine (the handler's route fills it). */
typedef enum of_route_kind {
    OF_ROUTE_CREATE,  /* create an entity: `trigger` from no state */
    OF_ROUTE_ADVANCE, /* the entity's own status event: the next automatic step, if any */
    OF_ROUTE_TRIGGER, /* apply `trigger` to the entity */
} of_route_kind;

typedef struct of_route {
    of_route_kind kind;        /* what to do */
    const char *entity_id;     /* ADVANCE, TRIGGER: the entity, found among the machine's load */
    const char *scope_id;      /* CREATE: the entity the new one belongs to, or NULL */
    const char *scope_kind;    /* its kind, e.g. "shelf": an unknown one is UNKNOWN_SHELF */
    int trigger;               /* CREATE, TRIGGER: the machine's trigger */
    int state;                 /* ADVANCE: the state the event announces */
    int version;               /* ADVANCE: the version the event announces */
    bool has_expected_version; /* TRIGGER: apply only at expected_version */
    int expected_version;      /* the version required */
    bool ignore_illegal;       /* TRIGGER: no row for the state is "ignored", not "rejected" */
    /* TRIGGER, optional: why the trigger does not apply in state (history
     * reason); default "<trigger> is not allowed from <state>". */
    void (*explain)(const char *state, char *buf, size_t size);
} of_route;

/* One consumed record of a batch. */
typedef struct of_worker_item {
    rd_kafka_message_t *msg; /* the Kafka message (owned by the runtime) */
    of_record_view rec;      /* view of msg */
    of_header_view *headers; /* header views (owned) */
    of_event ev;             /* parsed envelope (valid unless DEAD before parsing) */
    bool parsed;             /* ev holds data to free */
    bool decoded;            /* the handler's decode accepted it (ev.type is one of its types) */
    of_route route;          /* what it asks (valid when decoded) */
    of_item_state state;     /* what happens to it in this transaction */
    of_item_state initial;   /* state after decoding, restored when a transaction is retried */
    char dlq_code[40];       /* error code for the DLQ when not err.code's name, or "" */
    bool dlq_escaped;        /* store the dead letter in its escaped form (see batch_fail.c) */
    bool rechecked;          /* ran again after a unique violation, to find it in the inbox */
    bool on_record;          /* DUPLICATE found by applied_stmt, not by the inbox */
    of_event_error err;      /* reason when DEAD */
    const char *outcome;     /* short word for the log: "applied", "rejected", ... */
    bool settled;            /* DONE without a transaction: an entity's status event that
                                no step of this worker follows (ignored, no inbox row) */
    void *user;              /* handler's decoded payload */
    int64_t park_id;         /* a replayed parked event: its parked_events.id, else 0 */
    of_message *own;         /* a replayed parked event: the bytes rec points into */
    /* The trace of its step once applied (the event's, its entity's or a new
     * one; machine.h), for the log. */
    char trace_id[OF_TRACE_ID_SIZE];
} of_worker_item;

typedef struct of_worker of_worker;

/* An event to publish once its transaction commits. */
typedef struct of_worker_out {
    of_message m; /* the event (owned) */
    long cmd;     /* -1: always; else only if command cmd of the write pipeline returned a row */
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
    of_applied_list applied;      /* transitions applied by this transaction (metrics) */
    of_entity *entities;          /* the machine's entities of this transaction, by id */
    size_t n_entities;            /* count */
    long entity_load;  /* index of the machine's entity load in the load pipeline, or -1 */
    long applied_load; /* index of the handler's applied_stmt in the load pipeline, or -1 */
    long inbox_load;   /* index of the inbox check in the load pipeline */
    size_t first_load; /* index of the handler's first load command in the load pipeline */
    long fault;        /* item whose step failed permanently, or -1 */
    int wave;          /* current wave of the transaction (apply.c) */
    uint64_t ticket;   /* the relay's ticket when the transaction was submitted */
    /* Parking (park.c). */
    long park_load;      /* index of the parked-key check (or the replay's lock), or -1 */
    long park_done;      /* replay: index of of_park_done in the write pipeline, or -1 */
    size_t n_parked;     /* items of the transaction parked so far */
    bool replay;         /* the items are one parked key's events, replayed */
    bool final;          /* replay: the key is past park-max-age (or released --final):
                            nothing parks again, every event takes its outcome */
    bool replay_stopped; /* replay: an earlier transaction of the batch parked the key again */
    bool replay_lost;    /* replay: the key was gone when locked (replayed elsewhere) */
} of_worker_batch;

/* A row set of the worker's steps (db.h): a statement whose parameters are
 * arrays, one per column; steps add rows with of_step_rows(). */
typedef struct of_worker_set {
    of_db_stmt stmt; /* name and SQL ($1..$n_cols are arrays) */
    int n_cols;      /* columns */
} of_worker_set;

/* What a worker brings: its name, topics, statements, machine and steps. */
typedef struct of_worker_handler {
    const char *name;          /* worker name: group id, inbox consumer, ce_source suffix */
    const char *const *topics; /* topics to consume (before the prefix is applied) */
    size_t n_topics;           /* number of topics */
    const of_db_stmt *stmts;   /* the worker's own statements (the machine's are added) */
    size_t n_stmts;            /* number of statements */
    /* Optional: the name of one of stmts that takes $1 text[] of ce_ids and
     * returns (one text column) those whose effect is on permanent record,
     * e.g. an entity created with a unique source_event_id. Those events are
     * duplicates even once their inbox rows are pruned (a redelivery from a
     * committed offset older than --retention-inbox). */
    const char *applied_stmt;
    /* The steps' row sets, run once per wave in this order, after the
     * steps' own statements and before the machine's (see apply.c). */
    const of_worker_set *sets;
    size_t n_sets;             /* number of sets */
    const of_machine *machine; /* the machine the worker advances */
    const of_step_impl *steps; /* machine->n_steps entries: which steps it runs, and how */
    /* Checks the event's type and data for this worker. Returns 0, or a
     * negative of_event_code with err set (the event is dead-lettered). May
     * set it->user. */
    int (*decode)(void *ctx, of_worker_item *it, of_event_error *err);
    /* Says what a decoded event asks (r is zeroed). Returns 0 or a negative
     * of_err (the event is dead-lettered). */
    int (*route)(void *ctx, const of_worker_item *it, of_route *r);
    /* Optional: appends queries that read (and lock) what the steps of the
     * PENDING items of b->items[lo..hi) need, after the machine's entities
     * are loaded. Returns 0 or a negative of_err. */
    int (*load)(void *ctx, of_worker_batch *b, of_db_pipeline *p);
    /* Optional: builds the batch state the steps get as s->batch from the
     * load results (b->first_load is the index of the first). Returns 0 or a
     * negative of_err. */
    int (*prepare)(void *ctx, of_worker_batch *b, const of_db_pipeline *lp, void **state);
    /* Optional (needed for routes with a scope): the scope entity scope_id
     * in the batch state, or NULL when it does not exist. */
    void *(*find_scope)(void *state, const char *scope_id);
    /* Optional: the traceparent the scope entity's last step left (what the
     * load read of it), or NULL. A new entity whose event carries no trace
     * context goes on with that trace (machine.h, "Tracing"), so that what
     * belongs to an entity is on the entity's trace. */
    const char *(*scope_trace)(void *scope);
    /* Optional: whether a pending event must wait (park its key) because a
     * cause that may clear holds, e.g. a product it names does not exist yet.
     * Called before its step with the batch state, except when the key is
     * replayed for the last time. Returns the error code (static) and fills
     * reason, or NULL when the event can take effect now. */
    const char *(*park)(void *ctx, void *state, const of_worker_item *it, char *reason,
                        size_t size);
    /* Optional: releases what prepare built. */
    void (*release)(void *ctx, void *state);
    /* Releases it->user; may be NULL. */
    void (*item_free)(void *ctx, of_worker_item *it);
    /* Called once the loop runs, e.g. to start timers; may be NULL. */
    int (*start)(void *ctx, of_worker *w);
    /* Called when shutdown begins; may be NULL. */
    void (*stop)(void *ctx, of_worker *w);
    void *ctx; /* handler state */
} of_worker_handler;

/* Settings shared by every worker (see OF_WORKER_CONFIG). */
typedef struct of_worker_settings {
    char *database_url;          /* libpq URI */
    char *kafka_bootstrap;       /* bootstrap servers */
    char *group_id;              /* consumer group, default "orderflow-<worker>" */
    char *topic_prefix;          /* prefix for every topic name (tests), default "" */
    char *log_level;             /* debug, info, warn, error */
    int64_t batch_size;          /* max events per transaction */
    int64_t sweep_interval;      /* ms between outbox sweeps */
    int64_t sweep_grace;         /* ms before the sweep considers a row stuck */
    int64_t outbox_max_failures; /* permanent delivery errors before an outbox row is dead */
    int64_t retry_max;           /* ms, cap of the retry backoff */
    int64_t retry_limit;       /* counted transient failures before isolation / RETRIES_EXHAUSTED */
    int64_t statement_timeout; /* ms a statement may run on either connection */
    int64_t stall_timeout;     /* ms without a commit before /readyz says stalled */
    int64_t grace_period;      /* ms allowed for a graceful shutdown */
    int64_t pause_txn;       /* ms of a batch transaction above which no batch is taken (0: off) */
    int64_t pause_backlog;   /* unpublished outbox rows above which no batch is taken (0: off) */
    char *http_address;      /* address of the health and metrics endpoint */
    int64_t http_port;       /* its port; 0 disables it */
    int64_t park_max_age;    /* ms a key stays parked before its events take their outcome */
    int64_t park_retry_max;  /* ms, cap of the backoff between replays of a parked key */
    of_prune_settings prune; /* retention: what is pruned, how often, in batches of how many */
} of_worker_settings;

struct of_worker {
    uv_loop_t *loop;                /* the process's loop */
    const of_worker_handler *h;     /* the worker's steps */
    of_worker_settings cfg;         /* settings */
    char source[96];                /* ce_source of published events: "orderflow/<name>" */
    of_db db;                       /* batch connection */
    of_db aux;                      /* outbox relay and timer connection */
    of_db_stmt *stmts;              /* all statements of the batch connection (owned) */
    of_consumer consumer;           /* Kafka consumer */
    of_producer producer;           /* Kafka producer */
    of_outbox_relay relay;          /* outbox relay */
    uv_signal_t sigterm, sigint;    /* shutdown signals */
    uv_timer_t retry_timer;         /* batch retry backoff */
    uv_timer_t shutdown_timer;      /* grace period limit */
    uv_idle_t kick;                 /* runs the next batch from a fresh loop iteration */
    of_worker_batch batch;          /* the batch in progress */
    void *batch_state;              /* the handler's prepare() result for the transaction */
    bool busy;                      /* a batch is in progress */
    bool isolating;                 /* running the batch one event per transaction */
    of_db_pipeline lp, wp;          /* load and write pipelines */
    of_db_rows *rows;               /* the handler's row sets (h->sets) */
    of_db_rows mrows[OF_SQL_COUNT]; /* the machine's row sets (all but OF_SQL_LOAD) */
    of_db_rows outbox_rows;         /* outbox inserts of the transaction */
    long outbox_rows_cmd;           /* its statement in the pipeline, -1 when none */
    of_db_rows inbox_rows;          /* inbox inserts of the transaction */
    uint64_t retry_ms;              /* next retry delay */
    int64_t attempts;               /* counted transient failures of the current transaction */
    uint64_t progress_at;           /* uv_now() of the last commit, or of the batch's start */
    bool stopping;                  /* shutdown started */
    int exit_code;                  /* process exit code */
    int closing;                    /* base handles still closing */
    int dbs_closed;                 /* connections closed during shutdown (of 2) */
    bool producer_closed;           /* the producer is closed */
    uint64_t drain_deadline;        /* uv_now() limit for draining the relay */
    char topics[8][256];            /* prefixed topic names */
    of_metrics metrics;             /* registry served on /metrics (handlers may add families) */
    of_http http;                   /* health and metrics endpoint */
    struct of_worker_obs *obs;      /* the runtime's metric families and probes (worker_obs.c) */
    struct of_worker_bp *bp;        /* backpressure state (backpressure.c) */
    of_pruner pruner;               /* retention, on the relay connection (prune.h) */
    uv_timer_t park_timer;          /* looks for parked keys due for a replay (park.c) */
    bool park_due;                  /* the next batch is a replay claim, not a poll */
    bool park_more;                 /* a replay ran: claim again after the next poll */
    of_db_pipeline park_claim;      /* the claim of a due parked key */
    /* counters (metrics) */
    uint64_t n_batches, n_events, n_applied, n_duplicates, n_dead, n_retries, n_exhausted;
    uint64_t n_parked, n_unparked; /* events parked; parked events that took their outcome */
};

/* The common settings as of_config_item initialisers, for a worker whose
 * settings struct TYPE holds an of_worker_settings in MEMBER:
 *     static const of_config_item items[] = { OF_WORKER_CONFIG(my_settings, w), ... };
 * An unset group id becomes "orderflow-<worker>". */
#define OF_WORKER_CFG_(type, member, field)                                                        \
    offsetof(type, member) + offsetof(of_worker_settings, field)
// clang-format off
#define OF_WORKER_CONFIG(type, member)                                                             \
    {"database-url", "DATABASE_URL", "database-url", OF_CFG_SECRET,                                \
     "postgresql://orderflow@127.0.0.1:25432/orderflow", "PostgreSQL connection URI",              \
     OF_WORKER_CFG_(type, member, database_url), 0, -1},                                           \
    {"kafka-bootstrap-servers", "KAFKA_BOOTSTRAP_SERVERS", "kafka-bootstrap-servers",              \
     OF_CFG_STRING, "127.0.0.1:29092", "Kafka bootstrap servers (host:port,...)",                  \
     OF_WORKER_CFG_(type, member, kafka_bootstrap), 0, -1},                                        \
    {"group-id", "ORDERFLOW_GROUP_ID", "group-id", OF_CFG_STRING, NULL,                            \
     "Kafka consumer group (default orderflow-<worker>)",                                          \
     OF_WORKER_CFG_(type, member, group_id), 0, -1},                                               \
    {"topic-prefix", "ORDERFLOW_TOPIC_PREFIX", "topic-prefix", OF_CFG_STRING, "",                  \
     "prefix added to every topic name (isolated test runs)",                                      \
     OF_WORKER_CFG_(type, member, topic_prefix), 0, -1},                                           \
    {"log-level", "LOG_LEVEL", "log-level", OF_CFG_STRING, "info", "debug, info, warn or error",   \
     OF_WORKER_CFG_(type, member, log_level), 0, -1},                                              \
    {"batch-size", "ORDERFLOW_BATCH_SIZE", "batch-size", OF_CFG_INT, "500",                        \
     "most events handled in one transaction",                                                     \
     OF_WORKER_CFG_(type, member, batch_size), 1, 5000},                                           \
    {"outbox-sweep-interval", "ORDERFLOW_OUTBOX_SWEEP_INTERVAL", "outbox-sweep-interval",          \
     OF_CFG_MS, "5s", "time between sweeps for unpublished outbox rows",                           \
     OF_WORKER_CFG_(type, member, sweep_interval), 100, 3600000},                                  \
    {"outbox-sweep-grace", "ORDERFLOW_OUTBOX_SWEEP_GRACE", "outbox-sweep-grace", OF_CFG_MS, "30s", \
     "age after which an unpublished outbox row is republished by the sweep (longer than "         \
     "the producer's message.timeout.ms)",                                                         \
     OF_WORKER_CFG_(type, member, sweep_grace), 0, 3600000},                                       \
    {"outbox-max-failures", "ORDERFLOW_OUTBOX_MAX_FAILURES", "outbox-max-failures", OF_CFG_INT,    \
     "5",                                                                                          \
     "permanent delivery errors (the broker refuses the record itself, e.g. too large) before "    \
     "an outbox row is dead-lettered (outbox.dead_at) instead of retried",                         \
     OF_WORKER_CFG_(type, member, outbox_max_failures), 1, 1000},                                  \
    {"retry-max", "ORDERFLOW_RETRY_MAX", "retry-max", OF_CFG_MS, "30s",                            \
     "cap of the exponential backoff for transient failures",                                      \
     OF_WORKER_CFG_(type, member, retry_max), 100, 3600000},                                       \
    {"retry-limit", "ORDERFLOW_RETRY_LIMIT", "retry-limit", OF_CFG_INT, "8",                       \
     "transient failures of one transaction (not counting a lost connection) before its events "   \
     "are isolated and a single event is dead-lettered as RETRIES_EXHAUSTED",                      \
     OF_WORKER_CFG_(type, member, retry_limit), 1, 1000},                                          \
    {"statement-timeout", "ORDERFLOW_STATEMENT_TIMEOUT", "statement-timeout", OF_CFG_MS, "30s",    \
     "longest a PostgreSQL statement may run (statement_timeout of both connections); a batch "    \
     "that hits it is retried, a sweep that hits it claims half as many rows the next time",       \
     OF_WORKER_CFG_(type, member, statement_timeout), 1000, 3600000},                              \
    {"stall-timeout", "ORDERFLOW_STALL_TIMEOUT", "stall-timeout", OF_CFG_MS, "2m",                 \
     "time a batch may go without a commit before /readyz reports the worker as stalled",          \
     OF_WORKER_CFG_(type, member, stall_timeout), 1000, 86400000},                                 \
    {"grace-period", "ORDERFLOW_GRACE_PERIOD", "grace-period", OF_CFG_MS, "25s",                   \
     "time allowed to drain and exit on SIGTERM",                                                  \
     OF_WORKER_CFG_(type, member, grace_period), 1000, 3600000},                                   \
    {"pause-above-txn", "ORDERFLOW_PAUSE_ABOVE_TXN", "pause-above-txn", OF_CFG_MS, "5s",           \
     "a batch transaction slower than this stops the worker taking batches until a probe after "   \
     "a cool-down runs in under half of it (0 turns it off)",                                      \
     OF_WORKER_CFG_(type, member, pause_txn), 0, 3600000},                                         \
    {"pause-above-backlog", "ORDERFLOW_PAUSE_ABOVE_BACKLOG", "pause-above-backlog", OF_CFG_INT,    \
     "20000",                                                                                      \
     "unpublished outbox rows above which the worker takes no batch until fewer than half "        \
     "remain (0 turns it off)",                                                                    \
     OF_WORKER_CFG_(type, member, pause_backlog), 0, 100000000},                                   \
    {"http-address", "ORDERFLOW_HTTP_ADDRESS", "http-address", OF_CFG_STRING, "0.0.0.0",           \
     "address of the /healthz, /readyz and /metrics endpoint",                                     \
     OF_WORKER_CFG_(type, member, http_address), 0, -1},                                           \
    {"http-port", "ORDERFLOW_HTTP_PORT", "http-port", OF_CFG_INT, "8080",                          \
     "port of the /healthz, /readyz and /metrics endpoint (0 disables it)",                        \
     OF_WORKER_CFG_(type, member, http_port), 0, 65535},                                           \
    {"park-max-age", "ORDERFLOW_PARK_MAX_AGE", "park-max-age", OF_CFG_MS, "10m",                   \
     "longest a key stays parked (an event waiting for a missing product or customer, or for "     \
     "the version it expects) before its events take their final outcome (0: nothing parks)",     \
     OF_WORKER_CFG_(type, member, park_max_age), 0, 604800000},                                    \
    {"park-retry-max", "ORDERFLOW_PARK_RETRY_MAX", "park-retry-max", OF_CFG_MS, "30s",             \
     "cap of the backoff between replays of a parked key (1 s, doubling)",                         \
     OF_WORKER_CFG_(type, member, park_retry_max), 1000, 3600000},                                 \
    {"prune-interval", "ORDERFLOW_PRUNE_INTERVAL", "prune-interval", OF_CFG_MS, "60s",             \
     "time between prune cycles, which delete rows past their retention batch by batch "          \
     "(0 turns pruning off)",                                                                      \
     OF_PRUNE_CFG_(OF_WORKER_CFG_(type, member, prune), interval), 0, 86400000},                   \
    OF_PRUNE_CONFIG(OF_WORKER_CFG_(type, member, prune))
// clang-format on

/* Runs the worker until SIGTERM/SIGINT and a graceful drain; returns the
 * process exit code. cfg is taken over (freed by the runtime). */
int of_worker_run(const of_worker_handler *h, of_worker_settings *cfg);

/* Returns the prefixed name of a topic, for handlers that publish. */
const char *of_worker_topic(of_worker *w, const char *topic, char *buf, size_t size);

/* For steps: adds m to the transaction's outbox rows and keeps m (taken
 * over, m is zeroed) to publish after commit. */
int of_worker_emit(of_worker_batch *b, of_message *m) __attribute__((warn_unused_result));

/* For handlers' start: adds a retention target of the worker's own (its
 * domain's tables) to the runtime's pruner, which runs it after the
 * runtime's targets, with the worker's name as the scope of a scoped
 * target. A retention of 0 leaves it out. Returns 0 or OF_EINVAL (see
 * of_pruner_add). */
int of_worker_prune_add(of_worker *w, const of_prune_target *t, int64_t retention_ms)
    __attribute__((warn_unused_result));

/* For handlers' start: registers a gauge (no labels) set from the first
 * column of the first row of sql, run every 5 s on the relay connection
 * with the outbox backlog query (keep it cheap). name and help are copied,
 * sql must be static. Returns 0, OF_EINVAL (bad name, too many queries) or OF_ENOMEM. */
int of_worker_gauge_query(of_worker *w, const char *name, const char *help, const char *sql)
    __attribute__((warn_unused_result));

#endif
