/* dlq.h: dead letters, for events that can never be processed.
 *
 * A rejected event is kept twice, in one statement of the batch's
 * transaction: a dead_letters row (reason, code, original key, value and
 * headers) and an outbox row that republishes the original record to
 * "<topic>.dlq" with headers dlq_reason, dlq_error_code, dlq_topic,
 * dlq_partition, dlq_offset and dlq_worker added. The row is unique per
 * (worker, topic, partition, offset), so a redelivered poison record is
 * dead-lettered once, even when it has no usable ce_id.
 *
 * Whatever the record's bytes, the dead letter can be stored: key and value
 * are bytea; a header name or value that is not UTF-8 text (or holds a NUL)
 * is kept in base64 ("kb64", "b64", see of_outbox_headers_json); the reason
 * is escaped (of_text_escape). OF_DLQ_ESCAPED goes further for a dead letter
 * that still failed: every header in base64, the reason in ASCII, no ce_id
 * or ce_type, so that no text of the record is left to refuse.
 *
 * Ownership: arguments are only read. */
#ifndef ORDERFLOW_DLQ_H
#define ORDERFLOW_DLQ_H

#include "orderflow/db.h"
#include "orderflow/message.h"

extern const of_db_stmt of_dlq_stmts[];
extern const size_t of_dlq_n_stmts;

/* How much of the record a dead letter keeps as text. */
typedef enum of_dlq_form {
    OF_DLQ_AS_IS,   /* text stays text (escaped only where it is not) */
    OF_DLQ_ESCAPED, /* no text of the record: base64 headers, ASCII reason */
} of_dlq_form;

/* Builds the DLQ copy of rec (topic "<rec->topic>.dlq", same key and value,
 * original headers plus the dlq_ ones) into out (zeroed by the caller). */
int of_dlq_build(of_message *out, const of_record_view *rec, const char *worker,
                 const char *error_code, const char *reason) __attribute__((warn_unused_result));
/* Appends the dead_letters insert and, when that row is new, the outbox insert
 * of dlq_msg (built by of_dlq_build) to p. ce_id/ce_type may be NULL. */
int of_dlq_add(of_db_pipeline *p, const of_record_view *rec, const of_message *dlq_msg,
               const char *worker, const char *ce_id, const char *ce_type, const char *error_code,
               const char *reason, of_dlq_form form) __attribute__((warn_unused_result));

#endif
