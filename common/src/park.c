/* park.c: parking a key instead of blocking its partition, and replaying it.
 *
 * An event that cannot take effect now for a cause that may clear (the
 * handler's park hook: a dependency not there yet; the runtime: an
 * expected_version ahead of the entity's) is parked: it and every later
 * event of its Kafka key on its topic go to parked_events as they arrived,
 * in the batch's transaction, and their offsets are stored with the rest of
 * the batch, so the partition moves on (migration 0016).
 *
 * Every batch checks its keys against parked_keys (one statement, locked
 * FOR SHARE so that a replay in progress finishes first); an event of a
 * parked key is parked behind it. A redelivered event keeps its first place
 * (unique ce_id). An entity's own status events (ADVANCE) are never held:
 * they apply only at the state and version they announce, and they are
 * what a version gap waits for; one that applies makes its key due now.
 *
 * Between batches, once a second, the worker claims one due key (its
 * next_try_at passed: the backoff, or an operator's release) and runs
 * its events as a batch of their own: locked FOR UPDATE, applied through the
 * same routine as consumed events, deleted as they take effect; the first
 * that parks again stops the rest (backoff doubles up to park-retry-max).
 * A key parked for park-max-age (or released --final) is replayed for the
 * last time: nothing parks, every event takes its outcome (rejected, or
 * dead-lettered), so no key waits forever. The key is deleted in the
 * transaction that finds it without events. */
#include "worker_internal.h"

#include "orderflow/log.h"
#include "orderflow/outbox.h"
#include "orderflow/park.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_IS "consumer = $1 and topic = $2 and key = decode($3, 'hex')"

const of_db_stmt of_park_stmts[] = {
    /* The batch's keys that are parked ($2 topics, $3 hex keys, pairwise). */
    {"of_park_check",
     "select p.topic, encode(p.key, 'hex') from parked_keys p where p.consumer = $1"
     " and (p.topic, p.key) in (select u.t, decode(u.k, 'hex')"
     " from unnest($2::text[], $3::text[]) as u(t, k)) for share of p",
     true},
    /* Parks rows of (topic, hex key, partition, offset, ce_id, ce_type,
     * headers, hex payload, reason, code) for consumer $11: the key from the
     * first of its rows, unless it is parked already, and the events. */
    {"of_park_insert_rows",
     "with t as (select * from unnest($1::text[], $2::text[], $3::integer[], $4::bigint[],"
     " $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[]) with ordinality"
     " as t(topic, key, part, off, ce_id, ce_type, headers, payload, reason, code, n)),"
     " k as (insert into parked_keys (consumer, topic, key, reason, error_code, head_ce_id)"
     " select distinct on (t.topic, t.key) $11::text, t.topic, decode(t.key, 'hex'), t.reason,"
     " t.code, t.ce_id from t order by t.topic, t.key, t.n on conflict do nothing)"
     " insert into parked_events (consumer, topic, key, partition, \"offset\", ce_id, ce_type,"
     " headers, payload) select $11::text, t.topic, decode(t.key, 'hex'), t.part, t.off,"
     " t.ce_id, t.ce_type, t.headers::jsonb, decode(t.payload, 'hex') from t order by t.n"
     " on conflict (consumer, ce_id) do nothing",
     true},
    /* Claims the first due key of consumer $1 that no replay holds: its next
     * try is put off by a lease of 30 s (a replica that dies replaying it
     * leaves it due again then), and returns its first $2 events. */
    {"of_park_claim",
     "with k as (update parked_keys pk set next_try_at = now() + interval '30 seconds'"
     " from (select d.consumer, d.topic, d.key from parked_keys d where d.consumer = $1"
     " and d.next_try_at <= now() and exists (select 1 from parked_events pe"
     " where pe.consumer = d.consumer and pe.topic = d.topic and pe.key = d.key)"
     " order by d.next_try_at limit 1 for update skip locked) c"
     " where pk.consumer = c.consumer and pk.topic = c.topic and pk.key = c.key"
     " returning pk.topic, pk.key)"
     " select e.id, e.topic, encode(e.key, 'hex'), e.partition, e.\"offset\", e.headers::text,"
     " encode(e.payload, 'hex') from k join parked_events e on e.consumer = $1"
     " and e.topic = k.topic and e.key = k.key order by e.id limit $2",
     true},
    /* An entity's own status event applied to a parked key: its gap may be
     * filled, so the key is due now. */
    {"of_park_nudge",
     "update parked_keys p set next_try_at = now() from unnest($2::text[], $3::text[]) as u(t, k)"
     " where p.consumer = $1 and p.topic = u.t and p.key = decode(u.k, 'hex')"
     " and p.next_try_at > now()",
     true},
    /* The replay's lock; whether it is the key's last replay (parked
     * longer than $4 ms, or released --final), decided under the lock. */
    {"of_park_lock",
     "select release_final or parked_at <= now() - $4::bigint * interval '1 millisecond'"
     " from parked_keys where " KEY_IS " for update",
     true},
    {"of_park_present", "select id from parked_events where id = any($1::bigint[])", true},
    {"of_park_delete", "delete from parked_events where id = any($1::bigint[])", true},
    /* The head parked again: back off ($4 ms at most), keep why. */
    {"of_park_again",
     "update parked_keys set attempts = attempts + 1,"
     " parked_at = case when head_ce_id = $7 then parked_at else now() end,"
     " next_try_at = now() + least($4::bigint, 1000::bigint << least(attempts, 20))"
     " * interval '1 millisecond', released_at = null, released_by = null,"
     " release_final = false, reason = $5, error_code = $6, head_ce_id = $7 where " KEY_IS,
     true},
    /* Every event took effect: the key goes, unless events came meanwhile. */
    {"of_park_done",
     "delete from parked_keys k where " KEY_IS " and not exists (select 1 from parked_events e"
     " where e.consumer = k.consumer and e.topic = k.topic and e.key = k.key)",
     true},
    {"of_park_more",
     "update parked_keys set next_try_at = now(), released_at = null, released_by = null"
     " where " KEY_IS,
     true},
};
const size_t of_park_n_stmts = sizeof of_park_stmts / sizeof of_park_stmts[0];

/* The lifecycle (park.h). */

const of_park_transition of_park_lifecycle[OF_PARK_M_COUNT] = {
    [OF_PARK_M_PARK] = {OF_PARK_NONE, OF_PARK_PARKED, "an event cannot take effect yet"},
    [OF_PARK_M_HOLD] = {OF_PARK_PARKED, OF_PARK_PARKED, "a later event of the key waits behind"},
    [OF_PARK_M_DUE] = {OF_PARK_PARKED, OF_PARK_REPLAYING, "next try due (backoff, nudge, release)"},
    [OF_PARK_M_AGAIN] = {OF_PARK_REPLAYING, OF_PARK_PARKED, "head still waits, back off"},
    [OF_PARK_M_MORE] = {OF_PARK_REPLAYING, OF_PARK_PARKED, "events remain, due again now"},
    [OF_PARK_M_DONE] = {OF_PARK_REPLAYING, OF_PARK_NONE, "every event took effect"},
    [OF_PARK_M_FINAL] =
        {OF_PARK_REPLAYING, OF_PARK_NONE,
         "last replay (park-max-age, release --final), every event took its outcome"},
};

const char *of_park_state_name(of_park_state s)
{
    switch (s) {
    case OF_PARK_NONE:
        return "(none)";
    case OF_PARK_PARKED:
        return "PARKED";
    case OF_PARK_REPLAYING:
        return "REPLAYING";
    }
    return "?";
}

void of_park_render(of_render_format format, FILE *out)
{
    if (format == OF_RENDER_DOT)
        fprintf(out, "digraph parked_key {\n  rankdir=LR;\n  node [shape=box, style=rounded];\n"
                     "  none [shape=point];\n");
    else
        fprintf(out, "stateDiagram-v2\n");
    for (size_t i = 0; i < OF_PARK_M_COUNT; i++) {
        const of_park_transition *t = &of_park_lifecycle[i];
        const char *from = t->from == OF_PARK_NONE ? NULL : of_park_state_name(t->from);
        const char *to = t->to == OF_PARK_NONE ? NULL : of_park_state_name(t->to);
        if (format == OF_RENDER_DOT)
            fprintf(out, "  %s -> %s [label=\"%s\"];\n", from ? from : "none", to ? to : "none",
                    t->event);
        else
            fprintf(out, "    %s --> %s : %s\n", from ? from : "[*]", to ? to : "[*]", t->event);
    }
    if (format == OF_RENDER_DOT)
        fprintf(out, "}\n");
}

/* Logs a move of the key of it by the table. */
void of_park_note(const of_worker_item *it, of_park_move move, const char *detail)
{
    const of_park_transition *t = &of_park_lifecycle[move];
    bool text = it->rec.key_len < 200;
    for (size_t i = 0; text && i < it->rec.key_len; i++)
        text = ((const char *)it->rec.key)[i] >= 0x20 && ((const char *)it->rec.key)[i] < 0x7f;
    of_log_info("parked key %.*s%s on %s: %s -> %s: %s%s%s", text ? (int)it->rec.key_len : 0,
                text ? (const char *)it->rec.key : "", text ? "" : "(not text)", it->rec.topic,
                of_park_state_name(t->from), of_park_state_name(t->to), t->event,
                detail ? ": " : "", detail ? detail : "");
}

static bool same_key(const of_worker_item *a, const of_worker_item *b)
{
    return a->rec.key_len == b->rec.key_len && strcmp(a->rec.topic, b->rec.topic) == 0 &&
           memcmp(a->rec.key, b->rec.key, a->rec.key_len) == 0;
}

bool of_park_allowed(const of_worker *w, const of_worker_item *it)
{
    return it->rec.key != NULL && it->rec.key_len > 0 && it->parsed &&
           (w->batch.replay ? !w->batch.final : w->cfg.park_max_age > 0);
}

void of_park_item(of_worker *w, of_worker_item *it, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(it->err.reason, sizeof it->err.reason, fmt, ap);
    va_end(ap);
    snprintf(it->dlq_code, sizeof it->dlq_code, "%s", code);
    it->state = OF_ITEM_PARKED;
    it->outcome = "parked";
    w->batch.n_parked++;
}

/* An entity's own status event (ADVANCE) is never held: it is how the
 * machine moves on, what a version gap waits for, and it applies only at
 * the state and version it announces anyway. */
static bool exempt(const of_worker_item *it)
{
    return it->decoded && it->route.kind == OF_ROUTE_ADVANCE;
}

bool of_park_held(of_worker *w, of_worker_item *it)
{
    of_worker_batch *b = &w->batch;
    if (b->n_parked == 0 || it->rec.key == NULL || exempt(it))
        return false;
    for (size_t j = b->lo; &b->items[j] != it && j < b->hi; j++) {
        const of_worker_item *o = &b->items[j];
        if (o->state == OF_ITEM_PARKED && same_key(o, it)) {
            of_park_item(w, it, "PARKED_BEHIND", "held behind parked event %s (%s)",
                         o->parsed ? o->ev.id : "?", o->dlq_code);
            return true;
        }
    }
    return false;
}

/* Key hex of it, or NULL without memory. */
static char *key_hex(const of_worker_item *it)
{
    return of_db_hex(it->rec.key, it->rec.key_len);
}

/* The replayed key: $1..$3 of the KEY_IS statements. */
static int key_params(of_worker *w, const char **values, char **hex)
{
    const of_worker_item *first = &w->batch.items[0];
    *hex = key_hex(first);
    values[0] = w->h->name;
    values[1] = first->rec.topic;
    values[2] = *hex;
    return *hex != NULL ? OF_OK : OF_ENOMEM;
}

/* The ids of the replayed items of [lo, hi) (only those that ended, i.e. are
 * not parked again, when ended), as an array literal. */
static char *replay_ids(const of_worker_batch *b, bool ended)
{
    char **ids = calloc(b->hi - b->lo + 1, sizeof *ids);
    size_t n = 0;
    char *array = NULL;
    if (ids == NULL)
        return NULL;
    for (size_t i = b->lo; i < b->hi; i++) {
        const of_worker_item *it = &b->items[i];
        if (ended && it->state == OF_ITEM_PARKED)
            continue;
        if ((ids[n] = malloc(24)) == NULL)
            goto out;
        snprintf(ids[n++], 24, "%" PRId64, it->park_id);
    }
    array = of_db_text_array((const char *const *)ids, n);
out:
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
    return array;
}

int of_park_load(of_worker *w, of_db_pipeline *lp)
{
    of_worker_batch *b = &w->batch;
    const char **topics, **keys;
    size_t n = 0;
    int rc = OF_OK;

    b->park_load = -1;
    b->n_parked = 0;
    if (b->replay) {
        char *hex, *ids = replay_ids(b, false), age[24];
        const char *values[4];
        rc = key_params(w, values, &hex);
        snprintf(age, sizeof age, "%" PRId64, w->cfg.park_max_age);
        values[3] = age;
        b->park_load = (long)lp->n;
        if (rc == OF_OK && ids != NULL)
            rc = of_db_pipeline_add(lp, "of_park_lock", 4, values);
        if (rc == OF_OK)
            rc = ids != NULL
                     ? of_db_pipeline_add(lp, "of_park_present", 1, (const char *const[]){ids})
                     : OF_ENOMEM;
        free(hex);
        free(ids);
        return rc;
    }
    topics = calloc(b->hi - b->lo + 1, sizeof *topics);
    keys = calloc(b->hi - b->lo + 1, sizeof *keys);
    if (topics == NULL || keys == NULL) {
        rc = OF_ENOMEM;
        goto out;
    }
    for (size_t i = b->lo; i < b->hi; i++) {
        const of_worker_item *it = &b->items[i];
        if (it->state != OF_ITEM_PENDING || it->rec.key == NULL || it->rec.key_len == 0)
            continue;
        topics[n] = it->rec.topic;
        if ((keys[n] = key_hex(it)) == NULL) {
            rc = OF_ENOMEM;
            goto out;
        }
        n++;
    }
    if (n > 0) {
        char *ta = of_db_text_array(topics, n), *ka = of_db_text_array(keys, n);
        b->park_load = (long)lp->n;
        rc = ta != NULL && ka != NULL
                 ? of_db_pipeline_add(lp, "of_park_check", 3,
                                      (const char *const[]){w->h->name, ta, ka})
                 : OF_ENOMEM;
        free(ta);
        free(ka);
    }
out:
    for (size_t i = 0; keys != NULL && i < n; i++)
        free((char *)keys[i]);
    free(topics);
    free(keys);
    return rc;
}

void of_park_read(of_worker *w, const of_db_pipeline *lp)
{
    of_worker_batch *b = &w->batch;
    const PGresult *r;
    if (b->park_load < 0)
        return;
    r = of_db_pipeline_result(lp, (size_t)b->park_load);
    if (b->replay) {
        const PGresult *present = of_db_pipeline_result(lp, (size_t)b->park_load + 1);
        bool locked = r != NULL && PQntuples(r) > 0;
        /* Gone: another replica replayed the key since the claim; nothing
         * of it is this transaction's to write. */
        b->replay_lost = !locked;
        if (locked)
            b->final = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
        for (size_t i = b->lo; i < b->hi; i++) {
            of_worker_item *it = &b->items[i];
            bool here = false;
            for (int k = 0; locked && present != NULL && k < PQntuples(present); k++)
                here = here || strtoll(PQgetvalue(present, k, 0), NULL, 10) == it->park_id;
            if (!here) {
                /* Another replica replayed it while this one read it. */
                it->state = OF_ITEM_DUPLICATE;
                it->outcome = "replayed elsewhere";
            } else if (b->replay_stopped && it->state == OF_ITEM_PENDING && !exempt(it)) {
                of_park_item(w, it, "PARKED_BEHIND", "held behind its key's parked head");
            }
        }
        return;
    }
    for (int k = 0; r != NULL && k < PQntuples(r); k++) {
        const char *topic = PQgetvalue(r, k, 0), *hex = PQgetvalue(r, k, 1);
        for (size_t i = b->lo; i < b->hi; i++) {
            of_worker_item *it = &b->items[i];
            char *h;
            if (it->state != OF_ITEM_PENDING || it->rec.key == NULL || exempt(it) ||
                strcmp(it->rec.topic, topic) != 0)
                continue;
            h = key_hex(it);
            if (h != NULL && strcmp(h, hex) == 0)
                of_park_item(w, it, "PARKED_BEHIND", "its key is parked");
            free(h);
        }
    }
}

/* One row of of_park_insert_rows for it. */
static int add_row(of_db_rows *rows, const of_worker_item *it)
{
    of_message m = {0};
    char part[16], off[24];
    char *key = key_hex(it), *payload = of_db_hex(it->rec.value ? it->rec.value : "",
                                                  it->rec.value ? it->rec.value_len : 0);
    char *headers = NULL;
    int rc = key != NULL && payload != NULL ? OF_OK : OF_ENOMEM;
    for (size_t i = 0; rc == OF_OK && i < it->rec.n_headers; i++)
        rc = of_message_add_header(&m, it->rec.headers[i].name, it->rec.headers[i].value,
                                   it->rec.headers[i].len) == 0
                 ? OF_OK
                 : OF_ENOMEM;
    if (rc == OF_OK && (headers = of_outbox_headers_json(m.headers, m.n_headers, false)) == NULL)
        rc = OF_ENOMEM;
    snprintf(part, sizeof part, "%" PRId32, it->rec.partition);
    snprintf(off, sizeof off, "%" PRId64, it->rec.offset);
    if (rc == OF_OK) {
        const char *values[10] = {it->rec.topic,  key,         part,    off,
                                  it->ev.id,      it->ev.type, headers, payload,
                                  it->err.reason, it->dlq_code};
        rc = of_db_rows_add(rows, values);
    }
    of_message_free(&m);
    free(key);
    free(payload);
    free(headers);
    return rc;
}

/* Appends of_park_nudge for the keys found parked whose entity's own status
 * event applied in this transaction. */
static int nudge(of_worker *w, of_db_pipeline *wp)
{
    of_worker_batch *b = &w->batch;
    const PGresult *r = of_db_pipeline_result(&w->lp, (size_t)b->park_load);
    const char **topics = calloc((size_t)PQntuples(r) + 1, sizeof *topics);
    const char **keys = calloc((size_t)PQntuples(r) + 1, sizeof *keys);
    size_t n = 0;
    int rc = topics != NULL && keys != NULL ? OF_OK : OF_ENOMEM;
    for (int k = 0; rc == OF_OK && k < PQntuples(r); k++) {
        for (size_t i = b->lo; i < b->hi; i++) {
            const of_worker_item *it = &b->items[i];
            char *h;
            if (it->state != OF_ITEM_DONE || !exempt(it) || it->settled ||
                strcmp(it->rec.topic, PQgetvalue(r, k, 0)) != 0)
                continue;
            h = key_hex(it);
            bool same = h != NULL && strcmp(h, PQgetvalue(r, k, 1)) == 0;
            free(h);
            if (same) {
                topics[n] = PQgetvalue(r, k, 0);
                keys[n++] = PQgetvalue(r, k, 1);
                break;
            }
        }
    }
    if (rc == OF_OK && n > 0) {
        char *ta = of_db_text_array(topics, n), *ka = of_db_text_array(keys, n);
        rc = ta != NULL && ka != NULL
                 ? of_db_pipeline_add(wp, "of_park_nudge", 3,
                                      (const char *const[]){w->h->name, ta, ka})
                 : OF_ENOMEM;
        free(ta);
        free(ka);
    }
    free(topics);
    free(keys);
    return rc;
}

int of_park_write(of_worker *w, of_db_pipeline *wp)
{
    of_worker_batch *b = &w->batch;
    int rc = OF_OK;

    if (!b->replay) {
        of_db_rows rows;
        if (b->park_load >= 0)
            rc = nudge(w, wp);
        if (rc != OF_OK || b->n_parked == 0)
            return rc;
        rc = of_db_rows_init(&rows, "of_park_insert_rows", 10);
        for (size_t i = b->lo; rc == OF_OK && i < b->hi; i++)
            if (b->items[i].state == OF_ITEM_PARKED)
                rc = add_row(&rows, &b->items[i]);
        if (rc == OF_OK)
            rc = of_db_rows_flush_with(&rows, wp, true, w->h->name);
        of_db_rows_free(&rows);
        return rc;
    }
    /* A replay: the events that took their outcome go; the key backs off
     * when one parked again, and goes when none is left. */
    b->park_done = -1;
    if (b->replay_lost)
        return OF_OK;
    char *hex, *ids = replay_ids(b, true);
    const char *values[7];
    const of_worker_item *head = NULL;
    rc = key_params(w, values, &hex);
    if (rc == OF_OK && ids == NULL)
        rc = OF_ENOMEM;
    if (rc == OF_OK)
        rc = of_db_pipeline_add(wp, "of_park_delete", 1, (const char *const[]){ids});
    for (size_t i = b->lo; head == NULL && i < b->hi; i++)
        if (b->items[i].state == OF_ITEM_PARKED && strcmp(b->items[i].dlq_code, "PARKED_BEHIND"))
            head = &b->items[i];
    if (rc == OF_OK && head != NULL) {
        char retry[24];
        snprintf(retry, sizeof retry, "%" PRId64, w->cfg.park_retry_max);
        values[3] = retry;
        values[4] = head->err.reason;
        values[5] = head->dlq_code;
        values[6] = head->ev.id;
        rc = of_db_pipeline_add(wp, "of_park_again", 7, values);
    } else if (rc == OF_OK && b->n_parked == 0) {
        b->park_done = (long)wp->n;
        rc = of_db_pipeline_add(wp, "of_park_done", 3, values);
        if (rc == OF_OK)
            rc = of_db_pipeline_add(wp, "of_park_more", 3, values);
    }
    free(hex);
    free(ids);
    return rc;
}

void of_park_committed(of_worker *w, const of_db_pipeline *wp)
{
    of_worker_batch *b = &w->batch;
    const of_worker_item *again = NULL;
    bool held = false;
    for (size_t i = b->lo; i < b->hi; i++) {
        const of_worker_item *it = &b->items[i];
        bool head = it->state == OF_ITEM_PARKED && strcmp(it->dlq_code, "PARKED_BEHIND") != 0;
        if (it->state == OF_ITEM_PARKED && !b->replay) {
            w->n_parked++;
            if (head)
                of_park_note(it, OF_PARK_M_PARK, it->dlq_code);
        } else if (it->state == OF_ITEM_PARKED) {
            b->replay_stopped = true;
            held = true;
            if (head && again == NULL)
                again = it;
        } else if (b->replay && it->state != OF_ITEM_DUPLICATE) {
            w->n_unparked++;
        }
    }
    if (!b->replay)
        return;
    if (again != NULL) {
        of_park_note(again, OF_PARK_M_AGAIN, again->dlq_code);
    } else if (!held && b->park_done >= 0) {
        const PGresult *r = of_db_pipeline_result(wp, (size_t)b->park_done);
        bool gone = r != NULL && strcmp(PQcmdTuples((PGresult *)r), "1") == 0;
        of_park_note(&b->items[b->lo],
                     gone ? (b->final ? OF_PARK_M_FINAL : OF_PARK_M_DONE) : OF_PARK_M_MORE, NULL);
    }
}
