/* widget_worker.c: a two-step test machine run by the common worker runtime.
 *
 * It exists to test common/ on its own, against the real Postgres and Kafka
 * of ops/stack: "widget.created" creates a widget (and takes one unit of a
 * product's stock, an effect that would show if it ran twice), publishing
 * "widget.status.changed" NEW through the outbox; that event, consumed from
 * the same topic, drives the automatic step NEW -> DONE. The entity table
 * "widgets" is created by the test script in its scratch database. */
#include "orderflow/config.h"
#include "orderflow/event.h"
#include "orderflow/log.h"
#include "orderflow/machine.h"
#include "orderflow/uuid.h"
#include "orderflow/worker.h"

#include <stdlib.h>
#include <string.h>

#define TOPIC "widget.in"

typedef struct widget_settings {
    of_worker_settings w; /* common settings */
} widget_settings;

/* Decoded payload of one event. */
typedef struct widget_event {
    bool created;        /* widget.created (else widget.status.changed) */
    char product_id[65]; /* created: the product to take one unit of */
    char widget_id[37];  /* status.changed: the widget */
    char status[16];     /* status.changed: status announced */
    int version;         /* status.changed: version announced */
} widget_event;

/* Loaded row of a widget. */
typedef struct widget_row {
    char id[37];          /* widget id */
    char status[16];      /* current status */
    int version;          /* current version */
    char correlation[65]; /* correlation id */
} widget_row;

static int create_widget(of_step_ctx *s);
static int widget_changed(of_step_ctx *s, const char *from, const char *to, int version,
                          of_message *out);

static const of_transition widget_rows[] = {
    {OF_STATE_NONE, "widget.created", "NEW", "CreateWidget", "OrderProcess", true, "RUNNING", NULL},
    {"NEW", OF_TRIGGER_AUTO, "DONE", "FinishWidget", "OrderProcess", false, "SUCCEEDED", NULL},
};

static const of_step_impl widget_steps[] = {
    {"CreateWidget", create_widget},
    {"FinishWidget", NULL},
    {NULL, NULL},
};

static const of_machine widget_machine = {
    "widget", "widget", widget_rows, sizeof widget_rows / sizeof widget_rows[0], widget_changed};

static const of_db_stmt widget_stmts[] = {
    OF_MACHINE_STMTS("widget", "widgets"),
    {"widget_insert", "insert into widgets (id, status, version, correlation_id, product_id)"
                      " values ($1::uuid, $2, 1, $3, $4)"},
    {"widget_take_stock", "update products set stock = stock - 1 where id = $1"},
    {"widget_load", "select id, status, version, correlation_id from widgets"
                    " where id = any($1::uuid[]) order by id for update"},
};

static const char *const topics[] = {TOPIC};

static int create_widget(of_step_ctx *s)
{
    widget_event *e = s->it->user;
    const char *v1[4] = {s->entity_id, "NEW", s->correlation_id, e->product_id};
    const char *v2[1] = {e->product_id};
    if (of_db_pipeline_add(s->wp, "widget_insert", 4, v1) != 0 ||
        of_db_pipeline_add(s->wp, "widget_take_stock", 1, v2) != 0)
        return -1;
    s->input = cJSON_CreateObject();
    cJSON_AddStringToObject(s->input, "product_id", e->product_id);
    return 0;
}

static int widget_changed(of_step_ctx *s, const char *from, const char *to, int version,
                          of_message *out)
{
    char id[OF_UUID_STRLEN + 1], topic[256];
    of_event_error err;
    cJSON *data = cJSON_CreateObject();
    int rc = -1;
    if (data == NULL || of_uuid_v7(id) != 0)
        goto out;
    cJSON_AddStringToObject(data, "widget_id", s->entity_id);
    cJSON_AddStringToObject(data, "status", to);
    if (from[0] != '\0')
        cJSON_AddStringToObject(data, "previous_status", from);
    else
        cJSON_AddNullToObject(data, "previous_status");
    cJSON_AddNumberToObject(data, "version", version);
    cJSON_AddStringToObject(data, "correlation_id", s->correlation_id);
    of_event_attrs attrs = {id, "widget.status.changed", s->b->w->source, s->entity_id, NULL};
    rc = of_event_build(out, of_worker_topic(s->b->w, TOPIC, topic, sizeof topic), s->entity_id,
                        &attrs, data, &err);
out:
    cJSON_Delete(data);
    return rc;
}

static int widget_decode(void *ctx, of_worker_item *it, of_event_error *err)
{
    widget_event *e = calloc(1, sizeof *e);
    const cJSON *d = it->ev.data;
    if (e == NULL)
        return of_event_error_set(err, OF_EVENT_ERR_NO_MEMORY, "out of memory");
    it->user = e;
    if (strcmp(it->ev.type, "widget.created") == 0) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(d, "product_id");
        e->created = true;
        if (!cJSON_IsString(p) || !of_event_id_valid(p->valuestring))
            return of_event_error_set(err, OF_EVENT_ERR_MISSING_FIELD,
                                      "field \"product_id\" must be an id");
        snprintf(e->product_id, sizeof e->product_id, "%s", p->valuestring);
        return 0;
    }
    if (strcmp(it->ev.type, "widget.status.changed") == 0) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(d, "widget_id");
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(d, "status");
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(d, "version");
        if (!cJSON_IsString(id) || !of_uuid_valid(id->valuestring) || !cJSON_IsString(st) ||
            strlen(st->valuestring) >= sizeof e->status || !cJSON_IsNumber(v))
            return of_event_error_set(err, OF_EVENT_ERR_WRONG_TYPE, "bad widget.status.changed");
        snprintf(e->widget_id, sizeof e->widget_id, "%s", id->valuestring);
        snprintf(e->status, sizeof e->status, "%s", st->valuestring);
        e->version = v->valueint;
        return 0;
    }
    return of_event_error_set(err, OF_EVENT_ERR_UNKNOWN_TYPE, "unknown event type \"%s\"",
                              it->ev.type);
}

static int widget_load(void *ctx, of_worker_batch *b, of_db_pipeline *p)
{
    const char *ids[5000];
    size_t n = 0;
    for (size_t i = b->lo; i < b->hi && n < 5000; i++) {
        widget_event *e = b->items[i].user;
        if (b->items[i].state == OF_ITEM_PENDING && !e->created)
            ids[n++] = e->widget_id;
    }
    char *array = of_db_text_array(ids, n);
    if (array == NULL)
        return -1;
    const char *values[1] = {array};
    int rc = of_db_pipeline_add(p, "widget_load", 1, values);
    free(array);
    return rc;
}

/* Finds the loaded row of a widget, or NULL. */
static bool find_row(const PGresult *r, const char *id, widget_row *row)
{
    for (int i = 0; r != NULL && i < PQntuples(r); i++) {
        if (strcmp(PQgetvalue(r, i, 0), id) == 0) {
            snprintf(row->id, sizeof row->id, "%s", PQgetvalue(r, i, 0));
            snprintf(row->status, sizeof row->status, "%s", PQgetvalue(r, i, 1));
            row->version = atoi(PQgetvalue(r, i, 2));
            snprintf(row->correlation, sizeof row->correlation, "%s", PQgetvalue(r, i, 3));
            return true;
        }
    }
    return false;
}

static int widget_apply(void *ctx, of_worker_batch *b, const of_db_pipeline *lp, size_t first,
                        of_db_pipeline *wp)
{
    const PGresult *rows = of_db_pipeline_result(lp, first);
    for (size_t i = b->lo; i < b->hi; i++) {
        of_worker_item *it = &b->items[i];
        widget_event *e = it->user;
        of_step_ctx s = {0};
        widget_row row;
        int rc;
        if (it->state != OF_ITEM_PENDING)
            continue;
        s.b = b;
        s.it = it;
        s.wp = wp;
        if (e->created) {
            if (of_uuid_v7(s.entity_id) != 0)
                return -1;
            memcpy(s.order_id, s.entity_id, sizeof s.order_id);
            snprintf(s.correlation_id, sizeof s.correlation_id, "%s", it->ev.id);
            rc = of_machine_apply(&widget_machine, widget_steps, &s, OF_STATE_NONE,
                                  "widget.created");
        } else if (!find_row(rows, e->widget_id, &row)) {
            of_event_error_set(&it->err, OF_EVENT_ERR_INVALID_ID, "unknown widget \"%s\"",
                               e->widget_id);
            it->state = OF_ITEM_DEAD;
            continue;
        } else if (strcmp(row.status, e->status) != 0 || row.version != e->version) {
            it->state = OF_ITEM_DONE; /* stale: the widget moved on */
            it->outcome = "ignored";
            continue;
        } else {
            snprintf(s.entity_id, sizeof s.entity_id, "%s", row.id);
            memcpy(s.order_id, s.entity_id, sizeof s.order_id);
            snprintf(s.correlation_id, sizeof s.correlation_id, "%s", row.correlation);
            s.version = row.version;
            rc = of_machine_apply(&widget_machine, widget_steps, &s, row.status, OF_TRIGGER_AUTO);
            if (rc == OF_MACHINE_ILLEGAL) {
                it->state = OF_ITEM_DONE; /* no automatic step from here */
                it->outcome = "ignored";
                of_step_ctx_free(&s);
                continue;
            }
        }
        of_step_ctx_free(&s);
        if (rc != 0)
            return rc;
        it->state = OF_ITEM_DONE;
        it->outcome = "applied";
    }
    return 0;
}

static void widget_free(void *ctx, of_worker_item *it)
{
    free(it->user);
    it->user = NULL;
}

static const of_config_item items[] = {OF_WORKER_CONFIG(widget_settings, w)};

int main(int argc, char **argv)
{
    widget_settings s;
    char err[256];
    const of_worker_handler h = {
        "widget-worker",
        topics,
        1,
        widget_stmts,
        sizeof widget_stmts / sizeof widget_stmts[0],
        widget_decode,
        widget_load,
        widget_apply,
        widget_free,
        NULL,
        NULL,
        NULL,
    };
    if (of_machine_validate(&widget_machine, err, sizeof err) != 0) {
        fprintf(stderr, "widget machine is invalid: %s\n", err);
        return 70;
    }
    of_config_load_or_exit(items, sizeof items / sizeof items[0], &s, argc, argv, NULL,
                           "widget-worker", "test worker for the common runtime");
    return of_worker_run(&h, &s.w);
}
