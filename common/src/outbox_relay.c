/* outbox_relay.c: the relay that publishes outbox rows after their transaction committed: direct
 * sends, delivery reports, marks, failures and the sweep (orderflow/outbox.h describes the rules).
 */
#include "outbox_internal.h"

#include "orderflow/failpoint.h"
#include "orderflow/log.h"
#include "orderflow/uuid.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A claimed row stays leased for the producer's message.timeout.ms plus this
 * before another sweep may take it: until then its delivery report may come. */
#define SWEEP_LEASE_MARGIN_MS 10000
#define SWEEP_LIMIT           500
/* A sweep that hits the statement timeout claims half as many rows the next
 * time, down to this; one that took under a quarter of the timeout claims
 * twice as many, up to SWEEP_LIMIT. So a claim the planner makes slow (stale
 * statistics, a bloated index) still moves the backlog. */
#define SWEEP_LIMIT_MIN   8
#define SQLSTATE_CANCELED "57014"
/* Delivered ids are marked on the next loop turn, all that arrived meanwhile
 * in one UPDATE, one mark in flight at a time (so under load marks batch
 * themselves), committed without waiting for the WAL flush (the relay
 * connection's async_commit: a lost mark only means the row is sent again).
 * Marking soon matters: a row not yet marked is pending, and a younger row
 * of its key written meanwhile is held behind it. */
#define MARK_DELAY_MS 0
/* A failure record that did not commit is tried again after this. */
#define FAIL_RETRY_MS 1000

/* A failed delivery waiting to be recorded (of_outbox_fail). */
typedef struct of_outbox_failure {
    char *id;      /* outbox id */
    bool perm;     /* the broker refuses the record itself */
    char err[128]; /* the error's text */
} of_outbox_failure;

/* What travels with a message through the producer: the outbox id. */
static void *delivery_opaque(const char *id)
{
    return strdup(id);
}

/* Errors for which the broker will never take the record as it is:
 * retrying cannot help, they count towards max_failures. */
static bool permanent_error(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
        return true;
    default:
        return false;
    }
}

static void on_fail_timer(uv_timer_t *t);

/* Queues row id (taken over) to be recorded held, with err as its last
 * error; perm counts towards max_failures. */
static void queue_held(of_outbox_relay *r, char *id, bool perm, const char *err)
{
    if (r->n_failed == r->cap_failed) {
        size_t cap = r->cap_failed ? r->cap_failed * 2 : 64;
        of_outbox_failure *f = realloc(r->failed, cap * sizeof *f);
        if (f == NULL) {
            /* Unrecorded: the row is republished after the grace period. */
            free(id);
            return;
        }
        r->failed = f;
        r->cap_failed = cap;
    }
    of_outbox_failure *f = &r->failed[r->n_failed++];
    f->id = id;
    f->perm = perm;
    snprintf(f->err, sizeof f->err, "%s", err);
    if (!r->stopping && !uv_is_active((uv_handle_t *)&r->fail_timer) &&
        !uv_is_closing((uv_handle_t *)&r->fail_timer))
        uv_timer_start(&r->fail_timer, on_fail_timer, 0, 0);
}

/* Queues a copy of row id to be recorded held again (no failure counted). */
static void hold_copy(of_outbox_relay *r, const char *id, const char *why)
{
    char *copy = strdup(id);
    if (copy != NULL)
        queue_held(r, copy, false, why);
}

/* Remembers a failed delivery of row id (taken over) to record it soon.
 * Until it is recorded, transactions that cannot see it held publish
 * nothing directly (of_outbox_relay_publish); what is queued in the
 * producer behind it is purged (failing with _PURGE_QUEUE, held in turn). */
static void note_failure(of_outbox_relay *r, char *id, rd_kafka_resp_err_t err)
{
    r->failed_total++;
    r->noted++;
    if (err != RD_KAFKA_RESP_ERR__PURGE_QUEUE && err != RD_KAFKA_RESP_ERR__PURGE_INFLIGHT)
        r->purge = true;
    queue_held(r, id, permanent_error(err), rd_kafka_err2str(err));
}

static void relay_send(of_outbox_relay *r, of_message *m)
{
    void *opaque = delivery_opaque(m->id);
    /* of_producer_send returns local errors as they are (<= -100) and
     * broker errors negated. */
    int rc = opaque != NULL ? of_producer_send(r->producer, m, opaque) : 0;
    if (opaque == NULL || rc != 0) {
        /* Queue full, too large, no memory: the row is held for the sweep. */
        rd_kafka_resp_err_t err = opaque == NULL ? RD_KAFKA_RESP_ERR__FAIL
                                  : rc <= -100   ? (rd_kafka_resp_err_t)rc
                                                 : (rd_kafka_resp_err_t)-rc;
        of_log_warn("could not enqueue outbox row \"%s\" for \"%s\": %s", m->id, m->topic,
                    opaque != NULL ? rd_kafka_err2str(err) : "no memory");
        free(opaque);
        char *id = strdup(m->id);
        if (id != NULL)
            note_failure(r, id, err);
        return;
    }
    r->in_flight++;
}

void of_outbox_relay_hold(of_outbox_relay *r, of_message *m)
{
    r->held_total++;
    of_log_debug("outbox row \"%s\" held: an older event of its key is pending", m->id);
    of_message_free(m);
}

int of_outbox_result_find(const PGresult *res, const char *id, int *hint)
{
    int n = res != NULL ? PQntuples(res) : 0;
    for (int k = 0; k < n; k++) {
        int i = (*hint + k) % n;
        if (strcmp(PQgetvalue(res, i, 0), id) == 0) {
            *hint = i + 1;
            return strcmp(PQgetvalue(res, i, 1), "t") == 0 ? OF_OUTBOX_HELD : OF_OUTBOX_SEND;
        }
    }
    return OF_OUTBOX_ABSENT;
}

static void on_sweep_timer(uv_timer_t *t);

/* Records the failed deliveries: held for the sweep, permanent errors
 * counted, rows at the limit dead. */
static void on_fail_done(of_db *db, of_db_pipeline *p, int status, void *arg)
{
    of_outbox_relay *r = arg;
    PGresult *res = of_db_pipeline_result(p, 0);
    uint64_t retry_ms = 0;
    r->fail_in_flight = false;
    if (status != OF_OK || res == NULL) {
        /* Kept, and tried again: until they are recorded, rows written
         * meanwhile are held rather than sent past them. */
        of_log_warn("could not record %zu failed outbox deliveries: %s (trying again)", r->n_sub,
                    p->error);
        retry_ms = FAIL_RETRY_MS;
    } else {
        for (size_t i = 0; i < r->n_sub; i++)
            free(r->failed[i].id);
        memmove(r->failed, r->failed + r->n_sub, (r->n_failed - r->n_sub) * sizeof *r->failed);
        r->n_failed -= r->n_sub;
        /* With nothing left, a failure noted since but dropped (no memory)
         * has no record to wait for. */
        r->recorded = r->n_failed == 0 ? r->noted : r->fail_noted;
        for (int i = 0; i < PQntuples(res); i++) {
            r->dead_total++;
            of_log_error("outbox row \"%s\" for \"%s\" is dead after %u permanent delivery "
                         "error(s), last: %s; it is not sent again unless retried after the fix "
                         "(outbox retry)",
                         PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), r->max_failures,
                         PQgetvalue(res, i, 2));
        }
    }
    r->n_sub = 0;
    of_db_pipeline_reset(p);
    if (r->n_failed > 0 && !r->stopping)
        uv_timer_start(&r->fail_timer, on_fail_timer, retry_ms, 0);
}

static void on_fail_timer(uv_timer_t *t)
{
    of_outbox_relay *r = t->data;
    if (r->purge) {
        /* Messages queued behind the failed one must not overtake it: they
         * fail with _PURGE_QUEUE, are held, and go out in order. */
        r->purge = false;
        rd_kafka_purge(r->producer->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_NON_BLOCKING);
    }
    if (r->fail_in_flight)
        return;
    if (r->n_failed == 0) {
        /* Nothing to record (a failure dropped for want of memory): its row
         * is held by age (OF_OUTBOX_HOLD_AFTER) rather than by its record. */
        r->recorded = r->noted;
        return;
    }
    if (!of_db_ready(r->db))
        return;
    const char **ids = calloc(r->n_failed, sizeof *ids);
    const char **perms = calloc(r->n_failed, sizeof *perms);
    const char **errs = calloc(r->n_failed, sizeof *errs);
    char *a_ids = NULL, *a_perms = NULL, *a_errs = NULL, max[16];
    int rc = OF_ENOMEM;
    if (ids != NULL && perms != NULL && errs != NULL) {
        for (size_t i = 0; i < r->n_failed; i++) {
            ids[i] = r->failed[i].id;
            perms[i] = r->failed[i].perm ? "1" : "0";
            errs[i] = r->failed[i].err;
        }
        a_ids = of_db_text_array(ids, r->n_failed);
        a_perms = of_db_text_array(perms, r->n_failed);
        a_errs = of_db_text_array(errs, r->n_failed);
    }
    snprintf(max, sizeof max, "%u", r->max_failures);
    if (a_ids != NULL && a_perms != NULL && a_errs != NULL) {
        const char *values[4] = {a_ids, a_perms, a_errs, max};
        rc = of_db_pipeline_add(&r->fail, "of_outbox_fail", 4, values);
        if (rc == OF_OK)
            rc = of_db_submit(r->db, &r->fail, on_fail_done, r);
    }
    if (rc == OF_OK) {
        r->n_sub = r->n_failed;
        r->fail_noted = r->noted;
        r->fail_in_flight = true;
    } else {
        of_db_pipeline_reset(&r->fail);
    }
    free(ids);
    free(perms);
    free(errs);
    free(a_ids);
    free(a_perms);
    free(a_errs);
}

void of_outbox_relay_session(const of_outbox_relay *r, of_db *db)
{
    snprintf(db->session_set, sizeof db->session_set, "SET " OF_OUTBOX_SENDER_SETTING " = '%s'",
             r->sender);
}

uint64_t of_outbox_relay_ticket(const of_outbox_relay *r)
{
    return r->recorded;
}

void of_outbox_relay_publish(of_outbox_relay *r, of_message *msgs, size_t n, uint64_t ticket)
{
    for (size_t i = 0; i < n; i++) {
        /* relay_send may note a failure: the rows after it are held. */
        if (ticket == r->noted) {
            relay_send(r, &msgs[i]);
        } else {
            r->held_total++;
            hold_copy(r, msgs[i].id, "held behind a failed delivery of this process");
        }
        of_message_free(&msgs[i]);
    }
}

static void mark_flush(of_outbox_relay *r);

static void on_mark_timer(uv_timer_t *t)
{
    mark_flush(t->data);
}

/* Marks the delivered ids after MARK_DELAY_MS, or now when stopping. */
static void mark_soon(of_outbox_relay *r)
{
    if (r->stopping) {
        mark_flush(r);
        return;
    }
    if (r->n_delivered > 0 && !uv_is_active((uv_handle_t *)&r->mark_timer))
        uv_timer_start(&r->mark_timer, on_mark_timer, MARK_DELAY_MS, 0);
}

static void on_mark_done(of_db *db, of_db_pipeline *p, int status, void *arg)
{
    of_outbox_relay *r = arg;
    PGresult *res = of_db_pipeline_result(p, 0);
    bool waiting = status == OF_OK && res != NULL && PQntuples(res) == 1 &&
                   strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    r->mark_in_flight = false;
    if (status != OF_OK)
        of_log_warn("could not mark outbox rows published: %s (the sweep will resend them)",
                    p->error);
    of_db_pipeline_reset(p);
    mark_soon(r);
    /* Held rows of the keys just published wait: send them now. */
    if (waiting && !r->stopping) {
        if (r->sweep_in_flight)
            r->sweep_again = true;
        else
            on_sweep_timer(&r->sweep_timer);
    }
}

/* Marks every delivered id in one UPDATE; one mark is in flight at a time and
 * ids delivered meanwhile wait for the next. */
static void mark_flush(of_outbox_relay *r)
{
    char *array;
    if (r->mark_in_flight || r->n_delivered == 0)
        return;
    array = of_db_text_array((const char *const *)r->delivered, r->n_delivered);
    if (array == NULL)
        return;
    const char *values[1] = {array};
    if (of_db_pipeline_add(&r->mark, "of_outbox_mark", 1, values) != 0 ||
        of_db_submit(r->db, &r->mark, on_mark_done, r) != 0) {
        of_db_pipeline_reset(&r->mark);
        free(array);
        return;
    }
    free(array);
    for (size_t i = 0; i < r->n_delivered; i++)
        free(r->delivered[i]);
    r->n_delivered = 0;
    r->mark_in_flight = true;
}

void of_outbox_relay_delivered(of_outbox_relay *r, void *opaque, rd_kafka_resp_err_t err)
{
    char *id = opaque;
    if (r->in_flight > 0)
        r->in_flight--;
    if (id == NULL)
        return;
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        of_log_warn("could not publish outbox row \"%s\": %s (the sweep will retry)", id,
                    rd_kafka_err2str(err));
        note_failure(r, id, err);
        return;
    }
    r->published_total++;
    of_failpoint_crash("crash-after-produce");
    if (r->n_delivered == r->cap_delivered) {
        size_t cap = r->cap_delivered ? r->cap_delivered * 2 : 256;
        char **d = realloc(r->delivered, cap * sizeof *d);
        if (d == NULL) {
            free(id);
            return;
        }
        r->delivered = d;
        r->cap_delivered = cap;
    }
    r->delivered[r->n_delivered++] = id;
    mark_soon(r);
}

/* Turns one claimed row into a message and sends it. */
static void send_row(of_outbox_relay *r, const PGresult *res, int row)
{
    of_message m = {0};
    bool null = false; /* key: NULL for none; payload is never NULL */

    m.id = strdup(PQgetvalue(res, row, 0));
    m.topic = strdup(PQgetvalue(res, row, 1));
    if (m.id == NULL || m.topic == NULL)
        goto out;
    if (of_db_bytea_col(res, row, 2, &m.key, &m.key_len, &null) != 0)
        goto out;
    if (of_db_bytea_col(res, row, 3, &m.value, &m.value_len, &null) != 0 ||
        of_outbox_headers_parse(PQgetvalue(res, row, 4), &m) != 0) {
        of_log_error("could not decode outbox row \"%s\"", m.id);
        goto out;
    }
    relay_send(r, &m);
    r->swept_total++;
out:
    of_message_free(&m);
}

/* True when claimed row has the topic and key of one of rows[0..n). */
static bool key_among(const PGresult *res, int row, const int *rows, int n)
{
    for (int i = 0; i < n; i++) {
        if (PQgetisnull(res, row, 2) == PQgetisnull(res, rows[i], 2) &&
            strcmp(PQgetvalue(res, row, 1), PQgetvalue(res, rows[i], 1)) == 0 &&
            strcmp(PQgetvalue(res, row, 2), PQgetvalue(res, rows[i], 2)) == 0)
            return true;
    }
    return false;
}

static int cmp_seq(const void *a, const void *b)
{
    int64_t x = ((const int64_t *)a)[0], y = ((const int64_t *)b)[0];
    return x < y ? -1 : x > y;
}

/* The next sweep at once (then every interval again). */
static void sweep_soon(of_outbox_relay *r)
{
    if (!r->stopping)
        uv_timer_start(&r->sweep_timer, on_sweep_timer, 0, r->sweep_interval_ms);
}

static void on_sweep_done(of_db *db, of_db_pipeline *p, int status, void *arg)
{
    of_outbox_relay *r = arg;
    PGresult *res = of_db_pipeline_result(p, 1);
    uint64_t took = uv_now(r->sweep_timer.loop) - r->sweep_started_ms;
    size_t limit = r->sweep_limit;
    r->sweep_in_flight = false;
    if (r->sweep_again) {
        /* A mark freed held rows while this sweep ran: the next one now. */
        r->sweep_again = false;
        sweep_soon(r);
    }
    if (status != OF_OK || res == NULL) {
        if (strcmp(p->sqlstate, SQLSTATE_CANCELED) == 0) {
            r->sweep_timeouts++;
            if (r->sweep_limit > SWEEP_LIMIT_MIN)
                r->sweep_limit =
                    r->sweep_limit / 2 > SWEEP_LIMIT_MIN ? r->sweep_limit / 2 : SWEEP_LIMIT_MIN;
            of_log_warn("outbox sweep: claiming %zu row(s) was cancelled after %" PRIu64
                        " ms (statement timeout); claiming %zu per sweep from now on",
                        limit, took, r->sweep_limit);
            sweep_soon(r);
        } else {
            of_log_warn("outbox sweep failed: %s", p->error);
        }
        of_db_pipeline_reset(p);
        return;
    }
    if (r->sweep_limit < SWEEP_LIMIT && took * 4 < of_db_statement_timeout_ms(r->db)) {
        r->sweep_limit = r->sweep_limit * 2 < SWEEP_LIMIT ? r->sweep_limit * 2 : SWEEP_LIMIT;
        of_log_info("outbox sweep: claiming %zu row(s) took %" PRIu64
                    " ms; claiming %zu per sweep from now on",
                    limit, took, r->sweep_limit);
    }
    int rows = PQntuples(res);
    if (rows > 0)
        of_failpoint_crash("crash-in-sweep");
    if (rows > 0) {
        /* RETURNING has no order: send in seq order so one key's events keep theirs. */
        int64_t(*by_seq)[2] = calloc((size_t)rows, sizeof *by_seq);
        if (by_seq != NULL) {
            for (int i = 0; i < rows; i++) {
                by_seq[i][0] = strtoll(PQgetvalue(res, i, 5), NULL, 10);
                by_seq[i][1] = i;
            }
            qsort(by_seq, (size_t)rows, sizeof *by_seq, cmp_seq);
            /* Once a row fails as it is enqueued, the rest of its key are
             * held again (their lease dropped) and go out after it, in order. */
            int *failed = calloc((size_t)rows, sizeof *failed);
            int n_failed = 0;
            for (int i = 0; failed != NULL && i < rows; i++) {
                int row = (int)by_seq[i][1];
                if (key_among(res, row, failed, n_failed)) {
                    hold_copy(r, PQgetvalue(res, row, 0),
                              "held behind a failed delivery of its key");
                    continue;
                }
                uint64_t noted = r->noted;
                send_row(r, res, row);
                if (r->noted != noted)
                    failed[n_failed++] = row;
            }
            /* A full claim that all went out: more rows wait, the next
             * sweep now. (Not after a failure: the failed rows would be
             * claimed again at once while the producer still refuses.) */
            if ((size_t)rows >= limit && n_failed == 0)
                sweep_soon(r);
            free(failed);
            free(by_seq);
        }
        of_log_info("outbox sweep republished %d row(s)", rows);
    }
    of_db_pipeline_reset(p);
}

static void on_sweep_timer(uv_timer_t *t)
{
    of_outbox_relay *r = t->data;
    char grace[32], limit[32], lease[32];
    if (r->sweep_in_flight || r->stopping || !of_db_ready(r->db))
        return;
    snprintf(grace, sizeof grace, "%" PRIu64, r->sweep_grace_ms);
    snprintf(limit, sizeof limit, "%zu", r->sweep_limit);
    snprintf(lease, sizeof lease, "%" PRIu64, r->sweep_lease_ms);
    const char *values[3] = {grace, limit, lease};
    /* The claim runs only while this session holds the sweep lock (taken
     * if free; a sweep that finds it taken claims nothing). Unlocking all
     * also drops a lock an earlier failed sweep left behind. */
    if (of_db_pipeline_add_sql(&r->sweep, "select pg_try_advisory_lock(" OF_OUTBOX_SWEEP_LOCK ")",
                               0, NULL) != 0 ||
        of_db_pipeline_add(&r->sweep, "of_outbox_claim", 3, values) != 0 ||
        of_db_pipeline_add_sql(&r->sweep, "select pg_advisory_unlock_all()", 0, NULL) != 0 ||
        of_db_submit(r->db, &r->sweep, on_sweep_done, r) != 0) {
        of_db_pipeline_reset(&r->sweep);
        return;
    }
    r->sweep_in_flight = true;
    r->sweep_started_ms = uv_now(t->loop);
}

int of_outbox_relay_init(of_outbox_relay *r, uv_loop_t *loop, of_db *db, of_producer *producer,
                         uint64_t sweep_interval_ms, uint64_t sweep_grace_ms)
{
    memset(r, 0, sizeof *r);
    r->db = db;
    r->producer = producer;
    r->sweep_interval_ms = sweep_interval_ms;
    r->sweep_grace_ms = sweep_grace_ms;
    r->sweep_lease_ms = (uint64_t)producer->message_timeout_ms + SWEEP_LEASE_MARGIN_MS;
    if (sweep_grace_ms <= (uint64_t)producer->message_timeout_ms) {
        of_log_error("outbox-sweep-grace (%" PRIu64 " ms) must be longer than the producer's "
                     "message.timeout.ms (%" PRId64 " ms): a row still in flight would be sent "
                     "twice",
                     sweep_grace_ms, producer->message_timeout_ms);
        return OF_EINVAL;
    }
    r->sweep_limit = SWEEP_LIMIT;
    r->max_failures = 5;
    if (of_uuid_v4(r->sender) != 0)
        return OF_ESTART;
    of_db_pipeline_init(&r->mark);
    of_db_pipeline_init(&r->sweep);
    of_db_pipeline_init(&r->fail);
    if (uv_timer_init(loop, &r->sweep_timer) != 0 || uv_timer_init(loop, &r->mark_timer) != 0 ||
        uv_timer_init(loop, &r->fail_timer) != 0)
        return OF_ESTART;
    r->sweep_timer.data = r;
    r->mark_timer.data = r;
    r->fail_timer.data = r;
    return 0;
}

void of_outbox_relay_start(of_outbox_relay *r)
{
    uv_timer_start(&r->sweep_timer, on_sweep_timer, 0, r->sweep_interval_ms);
}

bool of_outbox_relay_idle(const of_outbox_relay *r)
{
    return r->in_flight == 0 && r->n_delivered == 0 && !r->mark_in_flight && !r->sweep_in_flight &&
           r->n_failed == 0 && !r->fail_in_flight;
}

void of_outbox_relay_stop(of_outbox_relay *r)
{
    r->stopping = true;
    uv_timer_stop(&r->sweep_timer);
    uv_timer_stop(&r->mark_timer);
    uv_timer_stop(&r->fail_timer);
    if (!uv_is_closing((uv_handle_t *)&r->sweep_timer))
        uv_close((uv_handle_t *)&r->sweep_timer, NULL);
    if (!uv_is_closing((uv_handle_t *)&r->mark_timer))
        uv_close((uv_handle_t *)&r->mark_timer, NULL);
    if (!uv_is_closing((uv_handle_t *)&r->fail_timer))
        uv_close((uv_handle_t *)&r->fail_timer, NULL);
    mark_flush(r);
    /* Failures still unrecorded: recorded now if the connection takes it
     * (else their rows are republished after the grace period). */
    on_fail_timer(&r->fail_timer);
}

void of_outbox_relay_free(of_outbox_relay *r)
{
    for (size_t i = 0; i < r->n_delivered; i++)
        free(r->delivered[i]);
    free(r->delivered);
    r->delivered = NULL;
    r->n_delivered = r->cap_delivered = 0;
    for (size_t i = 0; i < r->n_failed; i++)
        free(r->failed[i].id);
    free(r->failed);
    r->failed = NULL;
    r->n_failed = r->cap_failed = 0;
    of_db_pipeline_free(&r->mark);
    of_db_pipeline_free(&r->sweep);
    of_db_pipeline_free(&r->fail);
}
