/* failpoint.h: named points in the code where a test can inject a fault.
 *
 * Compiled in only with -DORDERFLOW_FAILPOINTS=ON (ops/test builds the test
 * suite that way); in any other build of_failpoint() is the constant false
 * and costs nothing. The environment variable ORDERFLOW_FAILPOINTS lists the
 * points to arm, comma-separated, each as NAME or NAME@N: the point fires on
 * its N-th pass (default the first) and on no other. What a firing point does
 * is up to its caller (e.g. SIGKILL the process, raise a fatal Kafka error).
 *
 * Points:
 *   producer-fatal          kafka_producer.c: after a delivery report, raise a
 *                           fatal idempotent-producer error;
 *   crash-after-commit      batch.c: a batch's transaction committed, its
 *                           offsets not stored, its events not sent;
 *   crash-after-produce     outbox_relay.c: an outbox row delivered, not yet marked;
 *   crash-in-sweep          outbox_relay.c: sweep rows claimed (leased), not sent;
 *   crash-in-deadline-scan  a worker's deadline scanner (deadlines.c):
 *                           deadlines fired and committed, their events
 *                           not sent;
 *   slow-start              worker.c: start-up sleeps 3 s before the loop runs
 *                           (a stop requested meanwhile must still be clean).
 * The crash-* points end the process with SIGKILL (of_failpoint_crash). */
#ifndef ORDERFLOW_FAILPOINT_H
#define ORDERFLOW_FAILPOINT_H

#include <stdbool.h>

#ifdef ORDERFLOW_FAILPOINTS
/* True when the point name is armed and this is the pass it fires on. Not
 * thread-safe: call from the loop thread only. */
bool of_failpoint(const char *name);
/* Ends the process with SIGKILL (no cleanup, as a crash or the OOM killer
 * would) when the point fires. */
void of_failpoint_crash(const char *name);
#else
#define of_failpoint(name)       ((void)(name), false)
#define of_failpoint_crash(name) ((void)(name))
#endif

#endif
