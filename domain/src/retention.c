/* retention.c: the statements that prune fired and cancelled payment deadlines. */
#include "domain/retention.h"

/* deadlines_done_idx (migration 0009) is on this expression, for the rows of
 * this predicate: the condition repeats the predicate so the index applies. */
#define DONE_AT "coalesce(fired_at, cancelled_at)"
#define DEADLINES_DUE                                                                              \
    "(fired_at is not null or cancelled_at is not null) and " DONE_AT " < " OF_PRUNE_BEFORE("$1")

const of_prune_target of_prune_deadlines = {
    "deadlines",
    OF_PRUNE_DELETE_SQL("deadlines", DEADLINES_DUE, DONE_AT, "$2"),
    OF_PRUNE_COUNT_SQL("deadlines", DEADLINES_DUE),
    "select extract(epoch from now() - min(" DONE_AT ")) from deadlines"
    " where fired_at is not null or cancelled_at is not null",
    NULL,
};
