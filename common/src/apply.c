/* apply.c: the one per-batch routine: load the machine's entities, route each event, apply its
 * transition.
 *
 * Every worker's transaction goes through here. The load pipeline gets the
 * machine's entities (OF_SQL_LOAD, locked, by id) and then the handler's own
 * loads; on the results each pending event is routed: a creation gets a new
 * entity (its scope must exist), an automatic step runs only when the event
 * announces the entity's current state and version, a trigger is checked
 * against expected_version and the table. Entities advance in memory, so
 * later events of the same batch see the earlier ones' effects.
 *
 * Writes are set-based: steps and the machine add rows to row sets (db.h),
 * and each set becomes one statement. Events are grouped into waves, in
 * the batch's sequence: a wave ends where an event touches an entity the wave
 * already touched. A wave's statements are the steps' own (as events come),
 * then the handler's row sets as declared, then the machine's:
 * execution starts, execution updates, status updates (guarded by version),
 * history. So no set-based statement sees one entity twice, and an entity's
 * changes still land in the order of its events. A typical batch is one
 * wave: a handful of statements for hundreds of events. */
#include "worker_internal.h"

#include "orderflow/inbox.h"
#include "orderflow/log.h"
#include "orderflow/uuid.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Fills the record view, then parses, decodes and routes one message. */
void of_apply_prepare(of_worker *w, of_worker_item *it, rd_kafka_message_t *m)
{
    rd_kafka_headers_t *hdrs = NULL;
    it->msg = m;
    it->rec.topic = rd_kafka_topic_name(m->rkt);
    it->rec.partition = m->partition;
    it->rec.offset = m->offset;
    it->rec.key = m->key;
    it->rec.key_len = m->key_len;
    it->rec.value = m->payload;
    it->rec.value_len = m->len;
    if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR && hdrs != NULL) {
        size_t cnt = rd_kafka_header_cnt(hdrs);
        it->headers = calloc(cnt ? cnt : 1, sizeof *it->headers);
        for (size_t i = 0; it->headers != NULL && i < cnt; i++) {
            const char *name;
            const void *val;
            size_t size;
            if (rd_kafka_header_get_all(hdrs, i, &name, &val, &size) != RD_KAFKA_RESP_ERR_NO_ERROR)
                break;
            it->headers[it->rec.n_headers].name = name;
            it->headers[it->rec.n_headers].value = val;
            it->headers[it->rec.n_headers].len = size;
            it->rec.n_headers++;
        }
        it->rec.headers = it->headers;
    }
    of_apply_classify(w, it);
}

void of_apply_classify(of_worker *w, of_worker_item *it)
{
    it->state = OF_ITEM_DEAD;
    if (of_event_parse(&it->rec, &it->ev, &it->err) == 0) {
        it->parsed = true;
        if (w->h->decode(w->h->ctx, it, &it->err) == 0) {
            int rc = w->h->route(w->h->ctx, it, &it->route);
            it->decoded = true;
            if (rc == OF_OK)
                it->state = OF_ITEM_PENDING;
            /* A status event for a state no step of this worker leaves (its
             * own CONFIRMED, say) is ignored whatever the entity holds: it
             * needs no transaction, no lock and no inbox row. */
            if (rc == OF_OK && it->route.kind == OF_ROUTE_ADVANCE &&
                !of_machine_runs(w->h->machine, w->h->steps, it->route.state, OF_TRIGGER_AUTO)) {
                it->state = OF_ITEM_DONE;
                it->settled = true;
                it->outcome = "ignored";
            } else
                of_event_error_set(&it->err, OF_EVENT_ERR_INVALID_ATTRIBUTE,
                                   "could not route event: %s", of_strerror(rc));
        }
    }
    it->initial = it->state;
}

static int by_id(const void *a, const void *b)
{
    return strcmp(((const of_entity *)a)->id, ((const of_entity *)b)->id);
}

static of_entity *find_entity(of_worker_batch *b, const char *id)
{
    of_entity key;
    snprintf(key.id, sizeof key.id, "%s", id);
    return bsearch(&key, b->entities, b->n_entities, sizeof *b->entities, by_id);
}

int of_apply_load(of_worker *w, of_worker_batch *b, of_db_pipeline *lp)
{
    const of_machine *m = w->h->machine;
    const char **ids = calloc(b->hi - b->lo + 1, sizeof *ids);
    char stmt[64];
    size_t n = 0;
    int rc = OF_OK;

    if (ids == NULL)
        return OF_ENOMEM;
    for (size_t i = b->lo; i < b->hi; i++) {
        const of_worker_item *it = &b->items[i];
        if (it->state == OF_ITEM_PENDING && it->route.kind != OF_ROUTE_CREATE)
            ids[n++] = it->route.entity_id;
    }
    /* The machine's entities first: one lock order (entities, then what the
     * handler loads) for every replica. A batch of creations loads none. */
    b->entity_load = -1;
    if (n > 0) {
        b->entity_load = (long)lp->n;
        rc = of_db_pipeline_add_list(lp, of_machine_stmt(m, OF_SQL_LOAD, stmt, sizeof stmt), ids, n,
                                     NULL);
    }
    b->first_load = lp->n;
    if (rc == OF_OK && w->h->load != NULL)
        rc = w->h->load(w->h->ctx, b, lp);
    free(ids);
    return rc;
}

/* The machine's entities from the load result, sorted by id. A status the
 * machine does not know is kept as -1; events on such an entity fail. */
static int read_entities(of_worker *w, of_worker_batch *b, const PGresult *r)
{
    int n = r != NULL ? PQntuples(r) : 0;
    free(b->entities);
    b->n_entities = 0;
    b->entities = calloc((size_t)n + 1, sizeof *b->entities);
    if (b->entities == NULL)
        return OF_ENOMEM;
    for (int i = 0; i < n; i++) {
        of_entity *e = &b->entities[b->n_entities++];
        snprintf(e->id, sizeof e->id, "%s", PQgetvalue(r, i, 0));
        if (of_machine_state_parse(w->h->machine, PQgetvalue(r, i, 1), &e->state) != OF_OK)
            e->state = -1;
        e->version = atoi(PQgetvalue(r, i, 2));
        snprintf(e->correlation, sizeof e->correlation, "%s", PQgetvalue(r, i, 3));
        snprintf(e->scope_id, sizeof e->scope_id, "%s", PQgetvalue(r, i, 4));
        /* Where its next step continues when its event carries no trace. */
        if (PQnfields(r) > 5)
            (void)of_trace_parse(PQgetvalue(r, i, 5), (size_t)PQgetlength(r, i, 5), &e->trace);
    }
    qsort(b->entities, b->n_entities, sizeof *b->entities, by_id);
    return OF_OK;
}

/* Marks it to be dead-lettered with code and a reason. */
static void dead(of_worker_item *it, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void dead(of_worker_item *it, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(it->err.reason, sizeof it->err.reason, fmt, ap);
    va_end(ap);
    it->err.code = OF_EVENT_ERR_INVALID_ID;
    snprintf(it->dlq_code, sizeof it->dlq_code, "%s", code);
    it->state = OF_ITEM_DEAD;
}

/* An entity the event names does not exist: UNKNOWN_<KIND>, e.g. UNKNOWN_WIDGET. */
static void unknown(of_worker_item *it, const char *kind, const char *id)
{
    char code[sizeof it->dlq_code];
    size_t k = (size_t)snprintf(code, sizeof code, "UNKNOWN_");
    for (const char *p = kind; *p != '\0' && k + 1 < sizeof code; p++)
        code[k++] = (char)(*p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
    code[k] = '\0';
    dead(it, code, "unknown %s \"%s\"", kind, id);
}

/* Why the event at fault failed, for its dead letter should the error be permanent. */
static void fault(of_worker_item *it, const of_step_ctx *s, int rc)
{
    of_event_error_set(
        &it->err, OF_EVENT_ERR_INVALID_ATTRIBUTE, "step \"%s\" of the %s machine failed: %s",
        s->t != NULL ? s->m->steps[s->t->step] : "record", s->m->name, of_strerror(rc));
}

/* Row sets. */

/* The machine's sets as a wave runs them (OF_SQL_LOAD is no set). */
static const of_machine_sql wave_sets[] = {OF_SQL_EXEC_START, OF_SQL_EXEC_UPDATE, OF_SQL_SET_STATE,
                                           OF_SQL_HISTORY};
static const int machine_cols[OF_SQL_COUNT] = {[OF_SQL_SET_STATE] = 5,
                                               [OF_SQL_EXEC_START] = 8,
                                               [OF_SQL_EXEC_UPDATE] = 6,
                                               [OF_SQL_HISTORY] = 15};

int of_apply_rows_init(of_worker *w)
{
    const of_worker_handler *h = w->h;
    int rc = of_db_rows_init(&w->outbox_rows, OF_OUTBOX_ROWS_STMT, OF_OUTBOX_ROWS_COLS);
    if (rc == OF_OK)
        rc = of_db_rows_init(&w->inbox_rows, OF_INBOX_ROWS_STMT, OF_INBOX_ROWS_COLS);
    for (size_t i = 0; rc == OF_OK && i < sizeof wave_sets / sizeof wave_sets[0]; i++) {
        of_machine_sql role = wave_sets[i];
        rc = of_db_rows_init(&w->mrows[role], h->machine->stmts[role].name, machine_cols[role]);
    }
    if (rc == OF_OK && h->n_sets > 0) {
        w->rows = calloc(h->n_sets, sizeof *w->rows);
        rc = w->rows != NULL ? OF_OK : OF_ENOMEM;
    }
    for (size_t i = 0; rc == OF_OK && i < h->n_sets; i++)
        rc = of_db_rows_init(&w->rows[i], h->sets[i].stmt.name, h->sets[i].n_cols);
    return rc;
}

void of_apply_rows_clear(of_worker *w)
{
    of_db_rows_clear(&w->outbox_rows);
    of_db_rows_clear(&w->inbox_rows);
    for (size_t i = 0; i < OF_SQL_COUNT; i++)
        of_db_rows_clear(&w->mrows[i]);
    for (size_t i = 0; w->rows != NULL && i < w->h->n_sets; i++)
        of_db_rows_clear(&w->rows[i]);
}

void of_apply_rows_free(of_worker *w)
{
    of_db_rows_free(&w->outbox_rows);
    of_db_rows_free(&w->inbox_rows);
    for (size_t i = 0; i < OF_SQL_COUNT; i++)
        of_db_rows_free(&w->mrows[i]);
    for (size_t i = 0; w->rows != NULL && i < w->h->n_sets; i++)
        of_db_rows_free(&w->rows[i]);
    free(w->rows);
    w->rows = NULL;
}

int of_apply_flush(of_worker *w, of_db_pipeline *wp)
{
    int rc = OF_OK;
    for (size_t i = 0; rc == OF_OK && w->rows != NULL && i < w->h->n_sets; i++)
        rc = of_db_rows_flush(&w->rows[i], wp);
    for (size_t i = 0; rc == OF_OK && i < sizeof wave_sets / sizeof wave_sets[0]; i++)
        rc = of_db_rows_flush(&w->mrows[wave_sets[i]], wp);
    w->batch.wave++;
    return rc;
}

/* Starts a new wave when e was touched by the current one; marks e touched. */
static int touch(of_worker *w, of_db_pipeline *wp, of_entity *e)
{
    int rc = OF_OK;
    if (e->wave == w->batch.wave)
        rc = of_apply_flush(w, wp);
    e->wave = w->batch.wave;
    return rc;
}

static void step_init(of_step_ctx *s, of_worker *w, of_worker_batch *b, of_worker_item *it,
                      of_db_pipeline *wp, of_entity *e, void *state)
{
    memset(s, 0, sizeof *s);
    s->mrows = w->mrows;
    s->rows = w->rows;
    s->m = w->h->machine;
    s->b = b;
    s->it = it;
    s->wp = wp;
    s->e = e;
    s->batch = state;
    s->to = -1;
    s->applied = &b->applied;
}

static int run_create(of_worker *w, of_worker_batch *b, of_worker_item *it, of_db_pipeline *wp,
                      void *state)
{
    const of_route *r = &it->route;
    of_entity e;
    of_step_ctx s;
    void *scope = NULL;
    int rc;

    if (r->scope_id != NULL) {
        scope = w->h->find_scope != NULL ? w->h->find_scope(state, r->scope_id) : NULL;
        if (scope == NULL) {
            unknown(it, r->scope_kind ? r->scope_kind : "entity", r->scope_id);
            return OF_OK;
        }
    }
    memset(&e, 0, sizeof e);
    if (of_uuid_v7(e.id) != 0)
        return OF_ENOMEM;
    snprintf(e.scope_id, sizeof e.scope_id, "%s", r->scope_id ? r->scope_id : "");
    snprintf(e.correlation, sizeof e.correlation, "%s", it->ev.id);
    e.state = OF_STATE_NONE;
    /* A new entity without a trace of its own goes on with its scope's. */
    if (scope != NULL && w->h->scope_trace != NULL) {
        const char *tp = w->h->scope_trace(scope);
        if (tp != NULL)
            (void)of_trace_parse(tp, strlen(tp), &e.trace);
    }
    step_init(&s, w, b, it, wp, &e, state);
    s.scope = scope;
    rc = of_machine_apply(&s, w->h->steps, r->trigger);
    if (rc == OF_OK)
        it->outcome = of_machine_state_name(s.m, e.state);
    else
        fault(it, &s, rc);
    memcpy(it->trace_id, s.trace.trace_id, sizeof it->trace_id);
    of_step_ctx_free(&s);
    return rc;
}

static void default_explain(const of_machine *m, int trigger, const char *state, char *buf,
                            size_t size)
{
    snprintf(buf, size, "%s is not allowed from %s", of_machine_trigger_name(m, trigger), state);
}

static int run_on_entity(of_worker *w, of_worker_batch *b, of_worker_item *it, of_db_pipeline *wp,
                         void *state)
{
    const of_machine *m = w->h->machine;
    const of_route *r = &it->route;
    of_entity *e = find_entity(b, r->entity_id);
    of_step_ctx s;
    char why[192];
    int rc;

    if (e == NULL) {
        unknown(it, m->entity, r->entity_id);
        return OF_OK;
    }
    if (e->state < 0) {
        dead(it, "PROCESSING_FAILED", "%s \"%s\" has a status the machine does not know", m->entity,
             e->id);
        return OF_OK;
    }
    if (r->kind == OF_ROUTE_ADVANCE &&
        (e->state != r->state || e->version != r->version ||
         !of_machine_runs(m, w->h->steps, e->state, OF_TRIGGER_AUTO))) {
        /* Only the event announcing the entity's current state drives the
         * next step; any other is stale or a repeat and changes nothing. */
        it->outcome = "ignored";
        return OF_OK;
    }
    if (r->kind == OF_ROUTE_TRIGGER && r->has_expected_version &&
        r->expected_version > e->version &&
        of_machine_runs(m, w->h->steps, e->state, OF_TRIGGER_AUTO) && of_park_allowed(w, it)) {
        /* A version ahead of the entity's while the entity moves on by
         * itself (an automatic step of this worker follows its state): its
         * own status events, never held, are still to come. Otherwise the
         * gap could only close by a trigger, which would wait behind this
         * one: rejected below. */
        of_park_item(w, it, "VERSION_GAP",
                     "expects version %d of %s \"%s\", which is at version %d", r->expected_version,
                     m->entity, e->id, e->version);
        return OF_OK;
    }
    rc = touch(w, wp, e);
    if (rc != OF_OK)
        return rc;
    step_init(&s, w, b, it, wp, e, state);
    if (r->kind == OF_ROUTE_ADVANCE) {
        rc = of_machine_apply(&s, w->h->steps, OF_TRIGGER_AUTO);
        it->outcome = "applied";
    } else if (r->has_expected_version && r->expected_version != e->version) {
        snprintf(why, sizeof why, "expected version %d, %s is at version %d", r->expected_version,
                 m->entity, e->version);
        it->outcome = "rejected";
        rc = of_machine_record(&s, "rejected", of_machine_trigger_name(m, r->trigger), why);
    } else {
        rc = of_machine_apply(&s, w->h->steps, r->trigger);
        it->outcome = "applied";
        if (rc == OF_EILLEGAL) {
            const char *name = of_machine_state_name(m, e->state);
            if (r->explain != NULL)
                r->explain(name, why, sizeof why);
            else
                default_explain(m, r->trigger, name, why, sizeof why);
            it->outcome = r->ignore_illegal ? "ignored" : "rejected";
            rc = of_machine_record(&s, it->outcome, of_machine_trigger_name(m, r->trigger), why);
        }
    }
    if (rc != OF_OK)
        fault(it, &s, rc);
    memcpy(it->trace_id, s.trace.trace_id, sizeof it->trace_id);
    of_step_ctx_free(&s);
    return rc;
}

int of_apply_run(of_worker *w, of_worker_batch *b, const of_db_pipeline *lp, of_db_pipeline *wp)
{
    const of_worker_handler *h = w->h;
    void *state = NULL;
    int rc = read_entities(
        w, b, b->entity_load >= 0 ? of_db_pipeline_result(lp, (size_t)b->entity_load) : NULL);
    b->wave = 1;
    if (rc == OF_OK && h->prepare != NULL)
        rc = h->prepare(h->ctx, b, lp, &state);
    for (size_t i = b->lo; rc == OF_OK && i < b->hi; i++) {
        of_worker_item *it = &b->items[i];
        if (it->state != OF_ITEM_PENDING || of_park_held(w, it))
            continue;
        if (h->park != NULL && of_park_allowed(w, it)) {
            char why[sizeof it->err.reason];
            const char *code = h->park(h->ctx, state, it, why, sizeof why);
            if (code != NULL) {
                of_park_item(w, it, code, "%s", why);
                continue;
            }
        }
        if (it->route.kind == OF_ROUTE_CREATE)
            rc = run_create(w, b, it, wp, state);
        else
            rc = run_on_entity(w, b, it, wp, state);
        if (rc != OF_OK) {
            /* The event at fault, for the runtime: a permanent error
             * dead-letters it alone. */
            b->fault = (long)i;
            break;
        }
        if (it->state == OF_ITEM_PENDING)
            it->state = OF_ITEM_DONE;
    }
    /* The last wave. */
    if (rc == OF_OK)
        rc = of_apply_flush(w, wp);
    if (h->release != NULL)
        h->release(h->ctx, state);
    return rc;
}
