/* deadlines.c: claims due payment deadlines and turns each into an order.deadline.expired event. */
#include "deadlines.h"

#include "domain/contract.h"
#include "orderflow/event.h"
#include "orderflow/failpoint.h"
#include "orderflow/log.h"
#include "orderflow/outbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLAIM_LIMIT "200"

static const char claim_sql[] =
    "update deadlines d set fired_at = now() where d.id in (select id from deadlines"
    " where fired_at is null and cancelled_at is null and due_at <= now()"
    " order by due_at limit $1::integer for update skip locked)"
    " returning d.event_id, d.order_id, d.kind,"
    " to_char(d.due_at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')";

static void free_msgs(deadline_scanner *s)
{
    for (size_t i = 0; i < s->n_msgs; i++)
        of_message_free(&s->msgs[i]);
    free(s->msgs);
    s->msgs = NULL;
    s->n_msgs = 0;
}

static void on_rolled_back(of_db *db, of_db_pipeline *p, int status, void *arg)
{
    deadline_scanner *s = arg;
    of_db_pipeline_reset(p);
    s->busy = false;
}

static void on_written(of_db *db, of_db_pipeline *p, int status, void *arg)
{
    deadline_scanner *s = arg;
    if (status == OF_ESQL) {
        /* The transaction is aborted; end it before the next scan. */
        of_log_warn("could not fire deadlines: %s", p->error);
        free_msgs(s);
        of_db_pipeline_reset(&s->claim);
        if (of_db_pipeline_add_sql(&s->claim, "rollback", 0, NULL) == 0 &&
            of_db_submit(&s->db, &s->claim, on_rolled_back, s) == 0)
            return;
        s->busy = false;
        return;
    }
    if (status == OF_OK) {
        if (s->n_msgs > 0)
            of_log_info("%zu payment deadline(s) expired", s->n_msgs);
        s->fired_total += s->n_msgs;
        if (s->n_msgs > 0)
            of_failpoint_crash("crash-in-deadline-scan");
        /* Statement i inserted msgs[i] and says whether it is held behind an
         * older event of its order (then the relay's sweep sends it). */
        for (size_t i = 0; i < s->n_msgs; i++) {
            int hint = 0;
            if (of_outbox_result_find(of_db_pipeline_result(p, i), s->msgs[i].id, &hint) ==
                OF_OUTBOX_HELD)
                of_outbox_relay_hold(&s->w->relay, &s->msgs[i]);
            else
                of_outbox_relay_publish(&s->w->relay, &s->msgs[i], 1, s->ticket);
        }
    } else if (status != OF_ECANCELED) {
        of_log_warn("could not fire deadlines: %s", p->error);
    }
    free_msgs(s);
    of_db_pipeline_reset(&s->claim);
    of_db_pipeline_reset(p);
    s->busy = false;
}

/* Builds the event for one claimed row. */
static int build_event(deadline_scanner *s, const PGresult *r, int row, of_message *out)
{
    of_order_deadline_expired ev;
    of_event_error err;
    cJSON *data = NULL;
    char topic[256];
    const char *id = PQgetvalue(r, row, 0);
    int rc;

    memset(&ev, 0, sizeof ev);
    snprintf(ev.order_id, sizeof ev.order_id, "%s", PQgetvalue(r, row, 1));
    snprintf(ev.kind, sizeof ev.kind, "%s", PQgetvalue(r, row, 2));
    snprintf(ev.due_at, sizeof ev.due_at, "%s", PQgetvalue(r, row, 3));
    /* The event id is fixed per deadline: should the row ever fire twice,
     * the inbox still applies it once. */
    rc = of_order_deadline_expired_encode(&ev, &data, &err);
    if (rc != 0) {
        of_log_error("could not encode deadline event: %s", err.reason);
        return rc;
    }
    of_event_attrs attrs = {id, OF_TYPE_ORDER_DEADLINE_EXPIRED, s->w->source, ev.order_id, NULL};
    rc = of_event_build(out, of_worker_topic(s->w, OF_TOPIC_ORDER_STATUS, topic, sizeof topic),
                        ev.order_id, &attrs, data, &err);
    cJSON_Delete(data);
    return rc;
}

static void on_claimed(of_db *db, of_db_pipeline *p, int status, void *arg)
{
    deadline_scanner *s = arg;
    const PGresult *r = of_db_pipeline_result(p, 1);
    int rows = r != NULL ? PQntuples(r) : 0;
    int rc = 0;

    of_db_pipeline_reset(&s->write);
    if (status != OF_OK) {
        if (status == OF_ECANCELED || status == OF_ECONN) {
            s->busy = false;
            return;
        }
        of_log_warn("could not claim due deadlines: %s", p->error);
        rc = -1;
    }
    if (rc == 0 && rows > 0) {
        s->msgs = calloc((size_t)rows, sizeof *s->msgs);
        rc = s->msgs == NULL ? -1 : 0;
        for (int i = 0; rc == 0 && i < rows; i++) {
            rc = build_event(s, r, i, &s->msgs[s->n_msgs]);
            if (rc == 0) {
                s->n_msgs++;
                rc = of_outbox_add(&s->write, &s->msgs[s->n_msgs - 1]);
            }
        }
    }
    if (rc == 0) {
        rc = of_db_pipeline_add_sql(&s->write, "commit", 0, NULL);
    } else {
        free_msgs(s);
        of_db_pipeline_reset(&s->write);
        rc = of_db_pipeline_add_sql(&s->write, "rollback", 0, NULL);
    }
    s->write.session = of_db_session(&s->db);
    s->ticket = of_outbox_relay_ticket(&s->w->relay);
    if (rc != 0 || of_db_submit(&s->db, &s->write, on_written, s) != 0) {
        free_msgs(s);
        s->busy = false;
    }
}

static void on_timer(uv_timer_t *t)
{
    deadline_scanner *s = t->data;
    const char *values[1] = {CLAIM_LIMIT};
    if (s->busy || s->stopping || !of_db_ready(&s->db))
        return;
    of_db_pipeline_reset(&s->claim);
    if (of_db_pipeline_add_sql(&s->claim, "begin", 0, NULL) != 0 ||
        of_db_pipeline_add_sql(&s->claim, claim_sql, 1, values) != 0 ||
        of_db_submit(&s->db, &s->claim, on_claimed, s) != 0) {
        of_db_pipeline_reset(&s->claim);
        return;
    }
    s->busy = true;
}

int deadline_scanner_start(deadline_scanner *s, of_worker *w, uint64_t interval_ms)
{
    memset(s, 0, sizeof *s);
    s->w = w;
    s->interval_ms = interval_ms;
    of_db_pipeline_init(&s->claim);
    of_db_pipeline_init(&s->write);
    if (of_db_init(&s->db, w->loop, w->cfg.database_url, "deadlines", of_outbox_stmts,
                   of_outbox_n_stmts, NULL, NULL) != 0)
        return OF_ENOMEM;
    of_outbox_relay_session(&w->relay, &s->db);
    if (of_db_start(&s->db) != 0 || uv_timer_init(w->loop, &s->timer) != 0)
        return OF_ESTART;
    s->timer.data = s;
    uv_timer_start(&s->timer, on_timer, interval_ms, interval_ms);
    return 0;
}

static void on_db_closed(of_db *db)
{
    deadline_scanner *s = (deadline_scanner *)((char *)db - offsetof(deadline_scanner, db));
    free_msgs(s);
    of_db_pipeline_free(&s->claim);
    of_db_pipeline_free(&s->write);
}

void deadline_scanner_stop(deadline_scanner *s)
{
    if (s->stopping || s->w == NULL)
        return;
    s->stopping = true;
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, NULL);
    of_db_close(&s->db, on_db_closed);
}
