/* dlq.c: dead-letter rows and their copies on the "<topic>.dlq" topics. */
#include "orderflow/dlq.h"

#include "orderflow/outbox.h"
#include "orderflow/text.h"
#include "orderflow/uuid.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One statement: the outbox row exists only when the dead_letters row is new,
 * so redelivery of the same poison record publishes no second DLQ copy. */
const of_db_stmt of_dlq_stmts[] = {
    {"of_dlq_insert",
     "with dl as (insert into dead_letters (worker, topic, partition, \"offset\", key, payload,"
     " headers, ce_id, ce_type, error_code, reason)"
     " values ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10, $11)"
     " on conflict (worker, topic, partition, \"offset\", record_md5) do nothing returning id)"
     " , ins as (insert into outbox (id, topic, key, payload, headers, held)"
     " select $12::uuid, $13::text, $5, $6, $14::jsonb, $5::bytea is not null "
     "and " OF_OUTBOX_HOLD_IF("$13::text", "$5::bytea",
                              "null::uuid[]") " from dl returning id, held)"
                                              " select id, held from ins",
     true},
};
const size_t of_dlq_n_stmts = sizeof of_dlq_stmts / sizeof of_dlq_stmts[0];

static char *dup_bytes(const void *src, size_t len)
{
    char *p = malloc(len + 1);
    if (p == NULL)
        return NULL;
    if (len > 0)
        memcpy(p, src, len);
    p[len] = '\0';
    return p;
}

int of_dlq_build(of_message *out, const of_record_view *rec, const char *worker,
                 const char *error_code, const char *reason)
{
    char id[OF_UUID_STRLEN + 1], part[16], off[24];
    size_t tlen = strlen(rec->topic);
    char *why = of_text_escape(reason, strlen(reason), false);

    if (why == NULL || of_uuid_v7(id) != 0)
        goto fail;
    out->id = strdup(id);
    out->topic = malloc(tlen + 5);
    if (out->id == NULL || out->topic == NULL)
        goto fail;
    memcpy(out->topic, rec->topic, tlen);
    memcpy(out->topic + tlen, ".dlq", 5);
    if (rec->key != NULL) {
        out->key = dup_bytes(rec->key, rec->key_len);
        if (out->key == NULL)
            goto fail;
        out->key_len = rec->key_len;
    }
    out->value = dup_bytes(rec->value, rec->value ? rec->value_len : 0);
    if (out->value == NULL)
        goto fail;
    out->value_len = rec->value ? rec->value_len : 0;
    for (size_t i = 0; i < rec->n_headers; i++) {
        const of_header_view *h = &rec->headers[i];
        if (of_message_add_header(out, h->name, h->value, h->len) != 0)
            goto fail;
    }
    snprintf(part, sizeof part, "%" PRId32, rec->partition);
    snprintf(off, sizeof off, "%" PRId64, rec->offset);
    if (of_message_add_header(out, "dlq_reason", why, strlen(why)) != 0 ||
        of_message_add_header(out, "dlq_error_code", error_code, strlen(error_code)) != 0 ||
        of_message_add_header(out, "dlq_topic", rec->topic, tlen) != 0 ||
        of_message_add_header(out, "dlq_partition", part, strlen(part)) != 0 ||
        of_message_add_header(out, "dlq_offset", off, strlen(off)) != 0 ||
        of_message_add_header(out, "dlq_worker", worker, strlen(worker)) != 0)
        goto fail;
    free(why);
    return OF_OK;
fail:
    free(why);
    of_message_free(out);
    return OF_ENOMEM;
}

int of_dlq_add(of_db_pipeline *p, const of_record_view *rec, const of_message *dlq_msg,
               const char *worker, const char *ce_id, const char *ce_type, const char *error_code,
               const char *reason, of_dlq_form form)
{
    char part[16], off[24];
    char *orig_headers = NULL, *dlq_headers = NULL, *why = NULL;
    bool escaped = form == OF_DLQ_ESCAPED;
    of_message orig = {0};
    int result = OF_ENOMEM;

    /* The original headers, as the dead_letters row keeps them for redrive. */
    for (size_t i = 0; i < rec->n_headers; i++) {
        if (of_message_add_header(&orig, rec->headers[i].name, rec->headers[i].value,
                                  rec->headers[i].len) != 0)
            goto out;
    }
    orig_headers = of_outbox_headers_json(orig.headers, orig.n_headers, escaped);
    dlq_headers = of_outbox_headers_json(dlq_msg->headers, dlq_msg->n_headers, escaped);
    /* The reason may quote what the record carried: stored as text it must be text. */
    why = of_text_escape(reason, strlen(reason), escaped);
    if (orig_headers == NULL || dlq_headers == NULL || why == NULL)
        goto out;
    if (escaped) {
        /* Nothing of the record as text: the ids are kept in the bytes. */
        ce_id = NULL;
        ce_type = NULL;
    }
    snprintf(part, sizeof part, "%" PRId32, rec->partition);
    snprintf(off, sizeof off, "%" PRId64, rec->offset);
    const char *values[14] = {
        worker,         rec->topic, part,    off,        rec->key, rec->value ? rec->value : "",
        orig_headers,   ce_id,      ce_type, error_code, why,      dlq_msg->id,
        dlq_msg->topic, dlq_headers};
    int lengths[14] = {0};
    int formats[14] = {0};
    lengths[4] = (int)rec->key_len;
    formats[4] = 1;
    lengths[5] = rec->value ? (int)rec->value_len : 0;
    formats[5] = 1;
    result = of_db_pipeline_add_bin(p, "of_dlq_insert", 14, values, lengths, formats);
out:
    of_message_free(&orig);
    free(orig_headers);
    free(dlq_headers);
    free(why);
    return result;
}
