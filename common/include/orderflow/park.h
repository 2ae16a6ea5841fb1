/* park.h: the lifecycle of a parked key, as one table.
 *
 * A worker parks a Kafka key when an event of it cannot take effect yet
 * (worker.h: the handler's park hook; an expected_version ahead of the
 * entity's): the event and every later event of the key on its topic wait in
 * parked_events while the partition moves on (common/src/park.c, migration
 * 0016). The runtime names every move of a key by this table in its log
 * ("parked key K: PARKED -> REPLAYING: ..."), and the operator CLI's graph command
 * draws the table for docs/state-machines.md. */
#ifndef ORDERFLOW_PARK_H
#define ORDERFLOW_PARK_H

#include <stdio.h>

#include "orderflow/machine.h"

typedef enum of_park_state {
    OF_PARK_NONE,      /* not parked: its events take effect as they come */
    OF_PARK_PARKED,    /* a parked_keys row: its events wait */
    OF_PARK_REPLAYING, /* a worker replays its events in one transaction */
} of_park_state;

typedef enum of_park_move {
    OF_PARK_M_PARK,  /* an event cannot take effect yet: the key parks */
    OF_PARK_M_HOLD,  /* a later event of the key waits behind */
    OF_PARK_M_DUE,   /* next_try_at passed: backoff, a nudge, or an operator's release */
    OF_PARK_M_AGAIN, /* the head still cannot take effect: back off, attempts + 1 */
    OF_PARK_M_MORE,  /* events remain (more than a batch, or arrived meanwhile): due now */
    OF_PARK_M_DONE,  /* every event took effect: the key goes */
    OF_PARK_M_FINAL, /* past park-max-age or released --final: every event took its outcome */
    OF_PARK_M_COUNT
} of_park_move;

typedef struct of_park_transition {
    of_park_state from; /* state before */
    of_park_state to;   /* state after */
    const char *event;  /* what moves it */
} of_park_transition;

/* The table, indexed by of_park_move. */
extern const of_park_transition of_park_lifecycle[OF_PARK_M_COUNT];

/* "PARKED", ...; OF_PARK_NONE is "(none)". */
const char *of_park_state_name(of_park_state s);

/* Draws the table as Graphviz dot or a Mermaid state diagram. */
void of_park_render(of_render_format format, FILE *out);

#endif
