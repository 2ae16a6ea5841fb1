/* retention.h: the domain's retention target, payment deadlines that fired or were cancelled, next
 * to the runtime's (orderflow/prune.h).
 *
 * order-status registers it with its pruner (of_worker_prune_add) and
 * orderctl prune runs it with the runtime's targets, so its statements and
 * its setting are written once, here. A deadline that is still pending is
 * never due: only one that fired (its order.deadline.expired event is in
 * the outbox) or was cancelled (the order was paid or cancelled) more than
 * the retention ago.
 *
 * Ownership: static data. */
#ifndef DOMAIN_RETENTION_H
#define DOMAIN_RETENTION_H

#include "orderflow/prune.h"

/* Fired or cancelled deadlines, by when that happened; not scoped. */
extern const of_prune_target of_prune_deadlines;

/* The of_config_item of its retention, for an int64_t (ms) at offset off. */
// clang-format off
#define OF_RETENTION_DEADLINES_CONFIG(off)                                                         \
    {"retention-deadlines", "ORDERFLOW_RETENTION_DEADLINES", "retention-deadlines", OF_CFG_MS,     \
     "7d", "age after firing or cancellation at which payment deadlines are pruned (pending "      \
     "ones never are)",                                                                            \
     (off), OF_PRUNE_MIN_MS, OF_PRUNE_MAX_MS}
// clang-format on

#endif
