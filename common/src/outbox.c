/* outbox.c: outbox rows written in a step's transaction: their statements (the relay's too, one
 * prepared set), the headers' JSON format and the rows added to a batch. The relay is
 * outbox_relay.c. */
#include "outbox_internal.h"

#include "orderflow/event.h"
#include "orderflow/text.h" /* of_text_storable, base64 */

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A pending row the sweep may send now: not leased (or its sweep lease ran
 * out), and held or never marked within the grace period ($1 ms). */
#define GRACE_OVER "now() - make_interval(secs => $1::double precision / 1000)"
#define CLAIMABLE(a)                                                                               \
    "((" a ".claimed_until is null or " a ".claimed_until < now()) and (" a ".held or " a          \
    ".created_at < " GRACE_OVER "))"

const of_db_stmt of_outbox_stmts[] = {
    {"of_outbox_insert",
     "with ins as (insert into outbox (id, topic, key, payload, headers, held)"
     " select $1::uuid, $2::text, $3::bytea, $4::bytea, $5::jsonb,"
     " $3::bytea is not null and " OF_OUTBOX_HOLD_IF(
         "$2::text", "$3::bytea", "null::uuid[]") " returning id, held) select id, held from ins",
     true},
    {"of_outbox_insert_rows",
     "with t as (select t.id, t.topic, decode(t.key, 'hex') k, decode(t.payload, 'hex') v,"
     " t.headers::jsonb h, t.n"
     " from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[]) with ordinality"
     " as t(id, topic, key, payload, headers, n)),"
     " ins as (insert into outbox (id, topic, key, payload, headers, held)"
     " select t.id, t.topic, t.k, t.v, t.h, t.k is not null and " OF_OUTBOX_HOLD_IF(
         "t.topic", "t.k", "$6::uuid[]") " from t order by "
                                         "t.n returning id, "
                                         "held)"
                                         " select id, held "
                                         "from ins",
     true},
    {"of_outbox_mark",
     /* Also says whether held rows of the marked keys wait: then the relay
      * sweeps at once instead of at its next interval. The test is a scalar
      * subquery per marked row, so its scan of outbox_pending_key_idx gets
      * the row's topic and key as index conditions: a join here was planned,
      * with statistics that said no row was pending, as a full scan of the
      * index per marked row (20 s per mark in a burst of 60,000 events). "h.held
      * is not false" (held is never null) keeps outbox_held_idx, whose
      * predicate it does not imply, out of it. */
     "with m as (update outbox set published_at = now() where id = any($1::uuid[])"
     " and published_at is null returning topic, key)"
     " select exists (select 1 from m where (select true from outbox h where h.topic = m.topic"
     " and h.key = m.key and h.held is not false and h.published_at is null"
     " and h.dead_at is null and h.id <> all($1::uuid[]) limit 1))",
     false},
    {"of_outbox_claim",
     /* Candidates from two small indexes (held rows, outbox_held_idx; rows
      * past the grace period, outbox_aged_idx), each claimed only when no
      * older pending row of its key is left behind (a scalar subquery per
      * candidate, so that its scan gets topic and key as index conditions,
      * on outbox_pending_key_idx, the only index that can answer it:
      * migration 0014); only while this session holds the sweep lock. The
      * claimed ids are an array, so the update finds them by outbox_pkey. */
     "update outbox o set attempts = o.attempts + 1, claimed_until = now()"
     " + make_interval(secs => $3::double precision / 1000)"
     " where o.published_at is null and o.id = any(array(select c.id from ("
     "(select id, seq, topic, key from outbox where held and published_at is null"
     " and dead_at is null and (claimed_until is null or claimed_until < now())"
     " order by seq limit $2)"
     " union all (select id, seq, topic, key from outbox where not held"
     " and published_at is null and dead_at is null and created_at < " GRACE_OVER
     " and (claimed_until is null or claimed_until < now()) order by created_at limit $2)) c"
     " where (select true from outbox p where p.topic = c.topic and p.key = c.key"
     " and p.seq < c.seq and p.published_at is null and p.dead_at is null"
     " and not " CLAIMABLE(
         "p") " limit 1) is null"
              " and exists (select 1 from pg_locks l where l.locktype = 'advisory'"
              " and l.pid = pg_backend_pid() and l.granted and l.classid = 0"
              " and l.objid = " OF_OUTBOX_SWEEP_LOCK " and l.objsubid = 1)"
              " order by c.seq limit $2))"
              " returning o.id, o.topic, o.key, o.payload, o.headers::text, o.seq",
     false},
    {"of_outbox_fail",
     /* Failed deliveries: held for the sweep; a permanent error counts, and
      * at the limit ($4) the row is dead. Returns the rows that died. */
     "with u as (update outbox o set held = true, claimed_until = null,"
     " failures = o.failures + f.perm, last_error = f.err,"
     " dead_at = case when o.failures + f.perm >= $4::integer then now() end"
     " from unnest($1::uuid[], $2::integer[], $3::text[]) as f(id, perm, err)"
     " where o.id = f.id and o.published_at is null and o.dead_at is null"
     " returning o.id, o.topic, o.last_error, o.dead_at)"
     " select id, topic, last_error from u where dead_at is not null",
     false},
};
const size_t of_outbox_n_stmts = sizeof of_outbox_stmts / sizeof of_outbox_stmts[0];

/* Adds bytes to obj as text under text_key when they are text jsonb can hold
 * (UTF-8 without NUL) and plain is allowed, else base64 under b64_key. */
static int add_bytes(cJSON *obj, const char *text_key, const char *b64_key, const char *bytes,
                     size_t len, bool plain)
{
    bool text_ok = plain && of_text_storable(bytes, len);
    if (text_ok)
        return cJSON_AddStringToObject(obj, text_key, bytes) != NULL ? OF_OK : OF_ENOMEM;
    char *b = of_base64_encode((const unsigned char *)bytes, len);
    cJSON *s = b != NULL ? cJSON_AddStringToObject(obj, b64_key, b) : NULL;
    free(b);
    return s != NULL ? OF_OK : OF_ENOMEM;
}

char *of_outbox_headers_json(const of_header *headers, size_t n, bool escaped)
{
    cJSON *arr = cJSON_CreateArray();
    char *text = NULL;
    if (arr == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        cJSON *h = cJSON_CreateObject();
        if (h == NULL || !cJSON_AddItemToArray(arr, h))
            goto out;
        if (add_bytes(h, "k", "kb64", headers[i].name, strlen(headers[i].name), !escaped) !=
                OF_OK ||
            add_bytes(h, "v", "b64", headers[i].value, headers[i].len, !escaped) != OF_OK)
            goto out;
    }
    text = cJSON_PrintUnformatted(arr);
out:
    cJSON_Delete(arr);
    return text;
}

/* The bytes of one member written by add_bytes, as a heap string (NUL added). */
static char *read_bytes(const cJSON *obj, const char *text_key, const char *b64_key, size_t *len)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(obj, text_key);
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(obj, b64_key);
    if (cJSON_IsString(t)) {
        *len = strlen(t->valuestring);
        return strdup(t->valuestring);
    }
    if (cJSON_IsString(b)) {
        unsigned char *bytes = NULL;
        return of_base64_decode(b->valuestring, strlen(b->valuestring), &bytes, len) == 0
                   ? (char *)bytes
                   : NULL;
    }
    return NULL;
}

int of_outbox_headers_parse(const char *json, of_message *m)
{
    cJSON *arr = cJSON_Parse(json);
    const cJSON *h;
    int result = OF_EINVAL;
    if (!cJSON_IsArray(arr))
        goto out;
    cJSON_ArrayForEach(h, arr)
    {
        size_t name_len = 0, len = 0;
        char *name = read_bytes(h, "k", "kb64", &name_len);
        char *value = read_bytes(h, "v", "b64", &len);
        /* A header name is a C string: one with a NUL byte cannot be sent. */
        int rc = name != NULL && value != NULL && strlen(name) == name_len
                     ? of_message_add_header(m, name, value, len)
                     : OF_EINVAL;
        free(name);
        free(value);
        if (rc != 0)
            goto out;
    }
    result = OF_OK;
out:
    cJSON_Delete(arr);
    return result;
}

int of_outbox_add(of_db_pipeline *p, const of_message *m)
{
    char *headers = of_outbox_headers_json(m->headers, m->n_headers, false);
    int result;
    if (headers == NULL)
        return OF_ENOMEM;
    const char *values[5] = {m->id, m->topic, m->key, m->value, headers};
    int lengths[5] = {0, 0, (int)m->key_len, (int)m->value_len, 0};
    int formats[5] = {0, 0, 1, 1, 0};
    result = of_db_pipeline_add_bin(p, "of_outbox_insert", 5, values, lengths, formats);
    free(headers);
    return result;
}

int of_outbox_rows_add(of_db_rows *r, const of_message *m)
{
    char *headers = of_outbox_headers_json(m->headers, m->n_headers, false);
    char *key = m->key != NULL ? of_db_hex(m->key, m->key_len) : NULL;
    char *value = of_db_hex(m->value != NULL ? m->value : "", m->value_len);
    int rc = OF_ENOMEM;
    if (headers != NULL && value != NULL && (m->key == NULL || key != NULL)) {
        const char *values[5] = {m->id, m->topic, key, value, headers};
        rc = of_db_rows_add(r, values);
    }
    free(headers);
    free(key);
    free(value);
    return rc;
}
