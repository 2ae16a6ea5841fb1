/* orderctl.h: the operator CLI's subcommand interface and the plumbing its subcommands share.
 *
 * Each subcommand is one function in its own cmd_<name>.c, listed in the
 * dispatch table in main.c. It receives argv starting at its own name
 * (argv[0] is "migrate"), parses its settings with orderflow/config.h, and
 * returns a sysexits.h code. Output for humans goes to stdout; failures are
 * plain "orderctl: could not ..." lines on stderr (a CLI's errors are read by
 * a person at a terminal, so they are not JSON log lines). Subcommands own
 * and free everything they allocate.
 *
 * Exit codes of the operator subcommands (submit .. dlq, prune):
 *   EX_USAGE (64)       wrong arguments: unknown flag, missing argument
 *   EX_DATAERR (65)     invalid input (an id, a status, an item, an event the
 *                       contract rejects), or, with --wait, an event the
 *                       workers rejected or dead-lettered
 *   EX_NOINPUT (66)     unknown order or dead letter
 *   EX_UNAVAILABLE (69) PostgreSQL or Kafka cannot be reached, or a delivery failed
 *   EX_SOFTWARE (70)    a statement failed or memory ran out
 *   EX_TEMPFAIL (75)    --wait ran out before the workers had processed the event
 *   EX_CONFIG (78)      a malformed database URL or Kafka setting
 *
 * The helpers below are blocking on purpose: blocking libpq calls and a
 * blocking librdkafka producer (produce, then poll until the delivery
 * report) are the simplest correct thing in a short-lived CLI. Workers never
 * use them; they run everything on their libuv loop.
 *
 * Ownership: PGresults and cJSON trees returned by the helpers are the
 * caller's (PQclear, cJSON_Delete); orderctl_print_json() takes its tree. */
#ifndef ORDERCTL_H
#define ORDERCTL_H

#include "orderflow/config.h"
#include "orderflow/db.h"
#include "orderflow/event.h"
#include "orderflow/message.h"

#include <cjson/cJSON.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Runs a subcommand; returns the process exit code (sysexits.h). */
typedef int (*orderctl_fn)(int argc, char **argv);

/* One entry of the dispatch table. */
typedef struct orderctl_command {
    const char *name; /* subcommand as typed, e.g. "migrate" */
    orderctl_fn run;  /* its entry point */
    const char *help; /* one line for orderctl --help */
} orderctl_command;

/* orderctl migrate up|down|status|verify: the database schema (cmd_migrate.c). */
int orderctl_migrate(int argc, char **argv);
/* orderctl topics create: the contract's topics and DLQ topics (cmd_topics.c). */
int orderctl_topics(int argc, char **argv);
/* orderctl graph MACHINE: the machine's diagram from its transition table (cmd_graph.c). */
int orderctl_graph(int argc, char **argv);
/* orderctl submit: publishes order.created (cmd_submit.c). */
int orderctl_submit(int argc, char **argv);
/* orderctl update ORDER STATUS: publishes order.status.update (cmd_submit.c). */
int orderctl_update(int argc, char **argv);
/* orderctl return ORDER --item ...: publishes return.requested (cmd_submit.c). */
int orderctl_return(int argc, char **argv);
/* orderctl describe ORDER: one order with everything attached to it (cmd_describe.c). */
int orderctl_describe(int argc, char **argv);
/* orderctl history ORDER: the order's timeline across its executions (cmd_describe.c). */
int orderctl_history(int argc, char **argv);
/* orderctl executions: recent executions, filtered (cmd_describe.c). */
int orderctl_executions(int argc, char **argv);
/* orderctl dlq list|show|redrive: dead letters (cmd_dlq.c). */
int orderctl_dlq(int argc, char **argv);
/* orderctl outbox list|retry: unpublished and dead outbox rows (cmd_outbox.c). */
int orderctl_outbox(int argc, char **argv);
/* orderctl parked list|show|release: keys whose events wait (cmd_parked.c). */
int orderctl_parked(int argc, char **argv);
/* orderctl prune: deletes rows whose retention has passed, as the workers do (cmd_prune.c). */
int orderctl_prune(int argc, char **argv);

/* --- shared settings ------------------------------------------------------ */

/* Settings every operator subcommand accepts, so that one set of flags (or
 * one environment) serves them all. Embedded in each subcommand's settings. */
typedef struct orderctl_common {
    char *database_url; /* libpq URI or key=value string */
    char *bootstrap;    /* Kafka bootstrap servers */
    char *prefix;       /* topic prefix (isolated test runs), "" by default */
    char *log_level;    /* level of the JSON diagnostics on stderr */
} orderctl_common;

#define ORDERCTL_DEFAULT_DATABASE_URL "postgresql://orderflow@127.0.0.1:25432/orderflow"

/* of_config_item initialisers for an orderctl_common in MEMBER of TYPE. */
#define ORDERCTL_COMMON_ITEMS(type, member)                                                        \
    {"database-url",                                                                               \
     "DATABASE_URL",                                                                               \
     "database-url",                                                                               \
     OF_CFG_SECRET,                                                                                \
     ORDERCTL_DEFAULT_DATABASE_URL,                                                                \
     "PostgreSQL connection URI",                                                                  \
     offsetof(type, member) + offsetof(orderctl_common, database_url),                             \
     0,                                                                                            \
     -1},                                                                                          \
        {"kafka-bootstrap-servers",                                                                \
         "KAFKA_BOOTSTRAP_SERVERS",                                                                \
         "kafka-bootstrap-servers",                                                                \
         OF_CFG_STRING,                                                                            \
         "127.0.0.1:29092",                                                                        \
         "Kafka bootstrap servers (host:port,...)",                                                \
         offsetof(type, member) + offsetof(orderctl_common, bootstrap),                            \
         0,                                                                                        \
         -1},                                                                                      \
        {"topic-prefix",                                                                           \
         "ORDERFLOW_TOPIC_PREFIX",                                                                 \
         "topic-prefix",                                                                           \
         OF_CFG_STRING,                                                                            \
         "",                                                                                       \
         "prefix of every topic name, as the workers were given it",                               \
         offsetof(type, member) + offsetof(orderctl_common, prefix),                               \
         0,                                                                                        \
         -1},                                                                                      \
    {                                                                                              \
        "log-level", "ORDERCTL_LOG_LEVEL", "log-level", OF_CFG_STRING, "error",                    \
            "level of librdkafka/libpq diagnostics (JSON lines on stderr): debug, info, warn, "    \
            "error",                                                                               \
            offsetof(type, member) + offsetof(orderctl_common, log_level), 0, -1                   \
    }

/* Loads a subcommand's settings (target must be zeroed). Returns true when
 * the command goes on; false with *code set when it is done: EX_OK after
 * --help was printed, EX_USAGE after a bad flag or value was reported. On
 * false the strings are already freed. progname is e.g. "orderctl describe". */
bool orderctl_settings_load(const of_config_item *items, size_t n, void *target, int argc,
                            char **argv, int *argc_rest, const char *progname, const char *summary,
                            int *code) __attribute__((warn_unused_result));
/* Applies common->log_level (of_log_init("orderctl") included). Returns EX_OK or EX_USAGE. */
int orderctl_common_apply(const orderctl_common *common) __attribute__((warn_unused_result));

/* Moves every "--NAME VALUE" and "--NAME=VALUE" (before a "--") out of
 * argv, which is compacted (*argc updated), and appends the VALUEs, which
 * still point into argv, to *values (a heap array the caller frees; the
 * strings are not copied). Returns EX_OK, EX_USAGE when the last flag has no
 * value, or EX_SOFTWARE when out of memory. For flags that may repeat, which
 * of_config keeps only once. */
int orderctl_take_repeated(int *argc, char **argv, const char *name, const char ***values,
                           size_t *n) __attribute__((warn_unused_result));

/* A point in time given as an RFC 3339 time (2025-01-31T12:00:00Z) or as a
 * duration back from now (90s, 15m, 1h, 7d, 2w): written to out as RFC 3339.
 * Returns 0, or -1 when text is neither. */
int orderctl_time_arg(const char *text, char out[OF_EVENT_TIME_MAX + 1])
    __attribute__((warn_unused_result));

/* Writes prefix + base into out (size bytes). Returns 0 or -1 when it does not fit. */
int orderctl_topic(char *out, size_t size, const char *prefix, const char *base)
    __attribute__((warn_unused_result));

/* --- PostgreSQL (blocking libpq) ------------------------------------------ */

/* Connects. Returns EX_OK with *out set (PQfinish it), EX_CONFIG for a URL
 * libpq cannot parse, or EX_UNAVAILABLE; the reason is printed. */
int orderctl_db_connect(const char *url, PGconn **out) __attribute__((warn_unused_result));
/* Runs sql with n text parameters (NULL = SQL NULL). Returns EX_OK with *out
 * set (PQclear it), EX_UNAVAILABLE when the connection is gone, or
 * EX_SOFTWARE when the statement failed; the reason is printed. */
int orderctl_db_query(PGconn *conn, const char *sql, int n, const char *const *values,
                      PGresult **out) __attribute__((warn_unused_result));
/* Runs a statement without rows (BEGIN, COMMIT, ...); same codes. */
int orderctl_db_exec(PGconn *conn, const char *sql) __attribute__((warn_unused_result));

/* --- output ---------------------------------------------------------------- */

/* Prints json (formatted) and a newline on stdout and deletes it. Returns
 * EX_OK, or EX_SOFTWARE when json is NULL (out of memory). */
int orderctl_print_json(cJSON *json);
/* Prints r as an aligned table with a header line, each line after indent;
 * NULL shows as "-", cells wider than max_width (0: no limit) are cut with "...". */
void orderctl_print_table(FILE *out, const PGresult *r, const char *indent, int max_width);

/* --- Kafka (blocking producer) --------------------------------------------- */

/* Where a record landed. */
typedef struct orderctl_delivery {
    int32_t partition; /* partition written */
    int64_t offset;    /* offset written */
} orderctl_delivery;

/* A producer used synchronously: one record at a time, each waited for. The
 * delivery report lands in the struct (not on a caller's stack), so a report
 * served late, while the producer is closed, still has valid memory. */
typedef struct orderctl_producer {
    rd_kafka_t *rk;          /* idempotent producer, or NULL */
    int timeout_ms;          /* how long one delivery may take */
    bool done;               /* the report of the record in flight arrived */
    rd_kafka_resp_err_t err; /* its result */
    orderctl_delivery last;  /* its position when delivered */
} orderctl_producer;

/* Creates the producer (acks=all, idempotent, message.timeout.ms =
 * timeout_ms; KAFKA_* environment applied). Returns EX_OK or EX_CONFIG; the
 * reason is printed. */
int orderctl_producer_open(orderctl_producer *p, const char *bootstrap, int timeout_ms)
    __attribute__((warn_unused_result));
/* Sends m (topic, key, value, headers; only read) and waits for its
 * delivery report. Returns EX_OK with *where filled (may be NULL), or
 * EX_UNAVAILABLE with the reason printed. */
int orderctl_produce_sync(orderctl_producer *p, const of_message *m, orderctl_delivery *where)
    __attribute__((warn_unused_result));
/* Flushes and destroys the producer; accepts a zeroed one. */
void orderctl_producer_close(orderctl_producer *p);

#endif
