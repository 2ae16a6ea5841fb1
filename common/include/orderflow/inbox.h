/* inbox.h: the record of processed events, keyed by (consumer, ce_id).
 *
 * A consumer writes one inbox row in the same transaction as the event's
 * effects; the primary key makes a second transaction for the same ce_id
 * fail, so an event has its effect once however often Kafka delivers it.
 * Before applying a batch the consumer asks which of its ce_ids are already
 * there (of_inbox_add_check) and skips those.
 *
 * Ownership: functions only read their arguments; the pipeline copies. */
#ifndef ORDERFLOW_INBOX_H
#define ORDERFLOW_INBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "orderflow/db.h"

extern const of_db_stmt of_inbox_stmts[];
extern const size_t of_inbox_n_stmts;

/* Appends "which of ids has consumer already processed" to p; the result has
 * one column, ce_id. */
int of_inbox_add_check(of_db_pipeline *p, const char *consumer, const char *const *ids, size_t n)
    __attribute__((warn_unused_result));
/* True when result (of the check) lists id. */
bool of_inbox_result_has(const PGresult *result, const char *id);
/* Adds the processed event's row to the set "of_inbox_insert_rows" (6
 * columns): one statement for the whole transaction. */
#define OF_INBOX_ROWS_STMT "of_inbox_insert_rows"
#define OF_INBOX_ROWS_COLS 6
int of_inbox_rows_add(of_db_rows *r, const char *consumer, const char *ce_id, const char *ce_type,
                      const char *topic, int32_t partition, int64_t offset)
    __attribute__((warn_unused_result));

#endif
