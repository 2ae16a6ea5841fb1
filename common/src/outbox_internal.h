/* outbox_internal.h: what outbox.c (statements, rows) and outbox_relay.c (the relay) share. */
#ifndef OF_OUTBOX_INTERNAL_H
#define OF_OUTBOX_INTERNAL_H

#include "orderflow/outbox.h"

/* One sweep at a time across every relay of the database: a session-level
 * advisory lock taken (if free) before the claim and dropped after it, so
 * that a sweep's snapshot sees every claim committed before it. */
#define OF_OUTBOX_SWEEP_LOCK "74062171"

#endif
