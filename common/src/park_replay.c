/* park_replay.c: replaying parked keys: the timer that makes a claim due, the claim of one
 * due key (leased, skip locked), and its events read back as items of a batch of their own
 * (park.c has the rest: the statements, parking, the replay's lock and writes). */
#include "worker_internal.h"

#include "orderflow/log.h"
#include "orderflow/outbox.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Replays between batches: how often the worker looks for a due key. */
#define PARK_TICK_MS 1000

static void on_tick(uv_timer_t *t)
{
    of_worker *w = t->data;
    w->park_due = true;
    if (!w->busy)
        of_worker_batch_done(w);
}

void of_park_start(of_worker *w)
{
    /* Every worker's parked keys, as the outbox gauges count every worker's rows. */
    if (of_worker_gauge_query(w, "orderflow_parked_keys",
                              "Kafka keys parked (waiting) in parked_keys, of every worker",
                              "select count(*) from parked_keys") != OF_OK ||
        of_worker_gauge_query(w, "orderflow_parked_oldest_age_seconds",
                              "Age of the oldest parked key (0 when none is parked)",
                              "select coalesce(extract(epoch from now() - min(parked_at)), 0)"
                              " from parked_keys") != OF_OK)
        of_log_warn("could not register the parked-key gauges");
    w->park_timer.data = w;
    uv_timer_start(&w->park_timer, on_tick, PARK_TICK_MS, PARK_TICK_MS);
}

/* Bytes of a hex column, as a heap buffer with a NUL after len bytes. */
static char *unhex(const char *hex, size_t *len)
{
    size_t n = strlen(hex) / 2;
    char *out = malloc(n + 1);
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) {
            free(out);
            return NULL;
        }
        out[i] = (char)v;
    }
    out[n] = '\0';
    *len = n;
    return out;
}

/* Row k of the claim as an owned message and the record view of it. */
static int read_event(const PGresult *r, int k, of_worker_item *it)
{
    of_message *m = calloc(1, sizeof *m);
    if (m == NULL)
        return OF_ENOMEM;
    it->own = m;
    it->park_id = strtoll(PQgetvalue(r, k, 0), NULL, 10);
    m->topic = strdup(PQgetvalue(r, k, 1));
    m->key = unhex(PQgetvalue(r, k, 2), &m->key_len);
    m->value = unhex(PQgetvalue(r, k, 6), &m->value_len);
    if (m->topic == NULL || m->key == NULL || m->value == NULL ||
        of_outbox_headers_parse(PQgetvalue(r, k, 5), m) != OF_OK)
        return OF_ENOMEM;
    it->headers = calloc(m->n_headers + 1, sizeof *it->headers);
    if (it->headers == NULL)
        return OF_ENOMEM;
    for (size_t i = 0; i < m->n_headers; i++) {
        it->headers[i].name = m->headers[i].name;
        it->headers[i].value = m->headers[i].value;
        it->headers[i].len = m->headers[i].len;
    }
    it->rec.topic = m->topic;
    it->rec.partition = (int32_t)strtol(PQgetvalue(r, k, 3), NULL, 10);
    it->rec.offset = strtoll(PQgetvalue(r, k, 4), NULL, 10);
    it->rec.key = m->key;
    it->rec.key_len = m->key_len;
    it->rec.value = m->value;
    it->rec.value_len = m->value_len;
    it->rec.headers = it->headers;
    it->rec.n_headers = m->n_headers;
    return OF_OK;
}

static void on_claimed(of_db *db, of_db_pipeline *p, int status, void *arg)
{
    of_worker *w = arg;
    const PGresult *r = status == OF_OK ? of_db_pipeline_result(p, 0) : NULL;
    int n = r != NULL ? PQntuples(r) : 0;
    of_worker_item *items;
    (void)db;

    w->busy = false;
    if (status != OF_OK)
        of_log_warn("could not look for parked keys: %s", p->error[0] ? p->error : "failed");
    if (n == 0 || w->stopping) {
        of_db_pipeline_reset(p);
        of_worker_batch_done(w);
        return;
    }
    items = calloc((size_t)n, sizeof *items);
    for (int k = 0; items != NULL && k < n; k++) {
        if (read_event(r, k, &items[k]) != OF_OK) {
            of_log_error("could not read parked event %s", PQgetvalue(r, k, 0));
            for (int j = 0; j <= k; j++) {
                free(items[j].headers);
                if (items[j].own != NULL)
                    of_message_free(items[j].own);
                free(items[j].own);
            }
            free(items);
            items = NULL;
        }
    }
    if (items != NULL) {
        of_log_debug("replaying %d parked event(s)", n);
        /* Another key may be due: claim again after the next poll, so that
         * replays and consumed batches take turns. */
        w->park_more = true;
        of_park_note(&items[0], OF_PARK_M_DUE, NULL);
        of_batch_start_replay(w, items, (size_t)n);
    } else {
        of_worker_batch_done(w);
    }
    of_db_pipeline_reset(p);
}

bool of_park_claim(of_worker *w)
{
    char limit[24];
    if (!w->park_due || w->busy || w->stopping || !of_db_ready(&w->db))
        return false;
    w->park_due = false;
    snprintf(limit, sizeof limit, "%" PRId64, w->cfg.batch_size);
    of_db_pipeline_reset(&w->park_claim);
    if (of_db_pipeline_add(&w->park_claim, "of_park_claim", 2,
                           (const char *const[]){w->h->name, limit}) != OF_OK ||
        of_db_submit(&w->db, &w->park_claim, on_claimed, w) != OF_OK)
        return false;
    w->busy = true;
    return true;
}
