/* outbox.h: the transactional outbox and its relay to Kafka.
 *
 * A step never publishes directly. It writes the outgoing event into the
 * outbox table inside its own transaction (of_outbox_add), so the event
 * exists if and only if the step's effects do. After the commit the relay
 * publishes those rows (of_outbox_relay_publish) and marks them published;
 * a periodic sweep republishes rows that stayed unpublished (the process
 * died between commit and delivery, the broker was down), claiming them with
 * a lease so that several replicas do not send the same row at once.
 *
 * Per-key order: a row is inserted held when an older row of its topic and
 * key is pending (unpublished, not dead), and a failed delivery makes its row
 * held. Held rows go only through the sweep, which claims a row only together
 * with (or after) every older pending row of its key, one sweep at a time
 * (an advisory lock), and sends what it claimed in seq order. After a failed
 * delivery the producer's queue is purged so that no younger message of the
 * key overtakes it. A permanent delivery error counts in outbox.failures; at
 * max_failures the row is dead (dead_at) and holds up nothing.
 * Publishing is at least once; consumers drop repeats by ce_id (= outbox id).
 *
 * Ownership: of_outbox_add() only reads the message. The relay takes over
 * the messages given to of_outbox_relay_publish() and frees them. */
#ifndef ORDERFLOW_OUTBOX_H
#define ORDERFLOW_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "orderflow/db.h"
#include "orderflow/kafka.h"
#include "orderflow/message.h"

/* The session setting naming the process that writes (and then sends) outbox
 * rows: outbox.sender takes it by default (migration 0015). Each worker
 * process draws one at start (of_outbox_relay_init) and sets it on every
 * connection that writes outbox rows (of_outbox_relay_session). */
#define OF_OUTBOX_SENDER_SETTING "orderflow.sender"

/* SQL condition, true when a new outbox row of this topic and key must be
 * held: an older row of the key is pending (neither published nor dead), is
 * not known to be on Kafka, and is at risk: held itself, waiting more than
 * OF_OUTBOX_HOLD_AFTER for its delivery (its delivery is failing), or written
 * by another sender (or none). Known on Kafka: it is one of consumed (an SQL
 * uuid[] expression, NULL for none: the events the writing transaction
 * consumed, whose marks may lag). Older rows of their keys are on Kafka too
 * (a key's rows reach Kafka in seq order), but they hold a row up until their
 * own marks come. A younger pending row of this sender is taken to be on its
 * way: this process's producer keeps the sequence of its own queue (never of
 * another's: a replica that had the partition before a rebalance, a process
 * that died after its commit), and one of its rows that fails is held, purges
 * what is queued behind it, and makes the relay hold what was written
 * meanwhile (of_outbox_relay_ticket). A scalar subquery, not EXISTS: the
 * planner may turn an EXISTS into one scan of every pending row per statement
 * (a hashed subplan), and it did when its statistics said none was pending;
 * this one is a probe of outbox_pending_key_idx by topic and key per row
 * (tests/integration/outbox_plans.c). */
#define OF_OUTBOX_HOLD_AFTER "2 seconds"
#define OF_OUTBOX_HOLD_IF(topic, key, consumed)                                                    \
    "coalesce((select true from outbox p where p.topic = " topic " and p.key = " key               \
    " and p.published_at is null and p.dead_at is null and (p.id = any(" consumed                  \
    ")) is not true and (p.held or p.created_at < now() - interval '" OF_OUTBOX_HOLD_AFTER         \
    "' or (p.sender = nullif(current_setting('" OF_OUTBOX_SENDER_SETTING                           \
    "', true), '')::uuid) is not true) limit 1), false)"

/* Prepared statements the outbox needs on the connections that use it. */
extern const of_db_stmt of_outbox_stmts[];
extern const size_t of_outbox_n_stmts;

/* Appends the INSERT of m (id, topic, key, value, headers) to p. Its result
 * is (id, held): held when an older row of its topic and key is pending, and
 * then the relay's sweep sends it in order (of_outbox_relay_hold). */
int of_outbox_add(of_db_pipeline *p, const of_message *m) __attribute__((warn_unused_result));

/* The row set of outbox inserts (statement "of_outbox_insert_rows", 5
 * columns, then one more parameter: the ce_ids that are UUIDs of the events
 * the transaction consumed, a uuid[] (of_db_rows_flush_with), for
 * OF_OUTBOX_HOLD_IF's rows known on Kafka): outbox.seq follows the rows as
 * they were added. Its result is (id, held) per row, as for
 * of_outbox_add. */
#define OF_OUTBOX_ROWS_STMT "of_outbox_insert_rows"
#define OF_OUTBOX_ROWS_COLS 5
/* Adds m's row to r. Returns 0 or OF_ENOMEM. */
int of_outbox_rows_add(of_db_rows *r, const of_message *m) __attribute__((warn_unused_result));

/* Encodes headers as the outbox's jsonb: [{"k":name,"v":text}], with
 * "kb64" for a name and "b64" for a value that is not UTF-8 text without
 * NUL bytes (jsonb could not hold it); escaped puts every name and value in
 * base64. A heap string, or NULL when out of memory. */
char *of_outbox_headers_json(const of_header *headers, size_t n, bool escaped);
/* The reverse: appends the headers in json to m. Returns 0 or OF_EINVAL. */
int of_outbox_headers_parse(const char *json, of_message *m) __attribute__((warn_unused_result));

typedef struct of_outbox_relay {
    of_db *db;                  /* connection for marking and sweeping (not the batch one) */
    of_producer *producer;      /* producer whose delivery reports come here */
    uv_timer_t sweep_timer;     /* periodic sweep */
    uv_timer_t mark_timer;      /* gathers delivered ids into one mark */
    uint64_t sweep_interval_ms; /* time between sweeps */
    uint64_t sweep_grace_ms;    /* rows younger than this are left to the live relay */
    uint64_t sweep_lease_ms;    /* a claimed row is not claimed again for this long */
    size_t sweep_limit;         /* rows claimed per sweep: halved after a sweep that hit the
                                   statement timeout, doubled back after quick ones */
    uint64_t sweep_started_ms;  /* loop time the sweep in flight was submitted */
    uint64_t sweep_timeouts;    /* sweeps cancelled by the statement timeout (metrics) */
    of_db_pipeline mark;        /* pipeline marking delivered rows */
    bool mark_in_flight;        /* mark is submitted */
    of_db_pipeline sweep;       /* pipeline claiming unpublished rows */
    bool sweep_in_flight;       /* sweep is submitted */
    char **delivered;           /* ids delivered, waiting to be marked */
    size_t n_delivered;         /* used entries */
    size_t cap_delivered;       /* allocated entries */
    uint64_t in_flight;         /* messages handed to the producer, not yet reported */
    uint64_t published_total;   /* delivered and reported (metrics) */
    uint64_t failed_total;      /* deliveries that failed (metrics) */
    uint64_t swept_total;       /* rows republished by the sweep (metrics) */
    uint64_t held_total;   /* rows left to the sweep behind older ones of their key (metrics) */
    uint64_t dead_total;   /* rows this relay gave up on (metrics) */
    uint32_t max_failures; /* permanent delivery errors before a row is dead */
    uv_timer_t fail_timer; /* records failed deliveries (and purges) soon */
    of_db_pipeline fail;   /* pipeline recording failed deliveries */
    bool fail_in_flight;   /* fail is submitted */
    struct of_outbox_failure *failed; /* failed deliveries, waiting to be recorded */
    size_t n_failed;                  /* used entries */
    size_t cap_failed;                /* allocated entries */
    bool purge;                       /* a delivery failed: purge the producer's queue */
    bool sweep_again;    /* a mark released held rows: sweep when the current one ends */
    bool stopping;       /* no more sweeps */
    char sender[37];     /* this process's sender id (OF_OUTBOX_SENDER_SETTING) */
    uint64_t noted;      /* failed deliveries noted so far */
    uint64_t recorded;   /* of those, the ones recorded held (committed) */
    uint64_t fail_noted; /* noted when the failure record in flight was built */
    size_t n_sub;        /* failed[0..n_sub) are in the record in flight */
} of_outbox_relay;

/* Sets up the relay; producer delivery reports must be forwarded to
 * of_outbox_relay_delivered(). No row may be sent twice while in flight:
 * the grace period must be longer than the producer's message.timeout.ms
 * (a row the live relay sent is left alone until its report is due), and
 * a swept row stays leased for message.timeout.ms plus 10 s. OF_EINVAL
 * (logged, naming both settings) when the grace period is not longer. */
int of_outbox_relay_init(of_outbox_relay *r, uv_loop_t *loop, of_db *db, of_producer *producer,
                         uint64_t sweep_interval_ms, uint64_t sweep_grace_ms)
    __attribute__((warn_unused_result));
/* Starts the periodic sweep (the first one runs at once). */
void of_outbox_relay_start(of_outbox_relay *r);
/* Sets db up to write outbox rows as this relay's sender (before it connects). */
void of_outbox_relay_session(const of_outbox_relay *r, of_db *db);
/* A ticket for a transaction that writes outbox rows, taken just before it is
 * submitted: how many of this relay's failed deliveries its inserts will see
 * recorded held. */
uint64_t of_outbox_relay_ticket(const of_outbox_relay *r);
/* Publishes committed outbox rows; takes ownership of msgs[0..n) contents.
 * ticket is their transaction's (of_outbox_relay_ticket): when a delivery
 * failed that the transaction could not see recorded, a row of the failed
 * one's key may have been written not held behind it, so every row is held
 * instead (recorded held, sent by the sweep in order). */
void of_outbox_relay_publish(of_outbox_relay *r, of_message *msgs, size_t n, uint64_t ticket);
/* A committed row its insert reported held (an older row of its key is
 * pending): not sent now, the sweep sends it in order; frees m. */
void of_outbox_relay_hold(of_outbox_relay *r, of_message *m);
/* What an insert's result (columns id, held) says of row id: absent (not
 * inserted, e.g. a dead letter recorded before), send now, or held. *hint is
 * where the search starts (rows usually come back as they were inserted). */
enum { OF_OUTBOX_ABSENT, OF_OUTBOX_SEND, OF_OUTBOX_HELD };
int of_outbox_result_find(const PGresult *res, const char *id, int *hint);
/* The producer's delivery report for a message sent by the relay. */
void of_outbox_relay_delivered(of_outbox_relay *r, void *opaque, rd_kafka_resp_err_t err);
/* True when nothing is in flight or waiting to be marked. */
bool of_outbox_relay_idle(const of_outbox_relay *r);
/* Stops sweeping and closes the timer; marks still pending are submitted. */
void of_outbox_relay_stop(of_outbox_relay *r);
void of_outbox_relay_free(of_outbox_relay *r);

#endif
