/* deadlines.h: the payment-deadline timer of the order-status worker.
 *
 * Deadlines are rows in Postgres (table deadlines), armed by OrderCompleted
 * and cancelled by RecordPayment or CancelOrder. A libuv timer claims due
 * rows with FOR UPDATE SKIP LOCKED, marks them fired and writes one
 * order.deadline.expired event per row to the outbox, in one transaction on
 * a connection of its own; the worker then applies PaymentTimeout when it
 * consumes the event, like any other. So several replicas never fire one
 * deadline twice, and a restart forgets none (an unfired row is found by the
 * next scan; a fired row's event is in the outbox).
 *
 * Ownership: the scanner lives in static storage of the worker; its
 * connection and timer are closed by deadline_scanner_stop(). */
#ifndef ORDERFLOW_DEADLINES_H
#define ORDERFLOW_DEADLINES_H

#include <stdbool.h>
#include <stdint.h>

#include "orderflow/worker.h"

typedef struct deadline_scanner {
    of_worker *w;         /* the worker (loop, relay, topic prefix, source) */
    of_db db;             /* own connection: the claim spans two pipelines */
    uv_timer_t timer;     /* periodic scan */
    uint64_t interval_ms; /* time between scans */
    of_db_pipeline claim; /* BEGIN + claim of due rows */
    of_db_pipeline write; /* outbox rows + COMMIT, or ROLLBACK */
    bool busy;            /* a scan is in progress */
    bool stopping;        /* deadline_scanner_stop() was called */
    of_message *msgs;     /* events of the scan in progress (owned until published) */
    size_t n_msgs;        /* count */
    uint64_t fired_total; /* deadlines fired by this process (metrics) */
    uint64_t ticket;      /* the relay's ticket when the write was submitted */
} deadline_scanner;

/* Connects and starts scanning every interval_ms. Returns 0 or a negative of_err. */
int deadline_scanner_start(deadline_scanner *s, of_worker *w, uint64_t interval_ms)
    __attribute__((warn_unused_result));
/* Stops the timer and closes the connection (a scan in progress is rolled back). */
void deadline_scanner_stop(deadline_scanner *s);

#endif
