/* widget_worker.c: a two-step test machine run by the common worker runtime.
 *
 * It exists to test common/ on its own, against the real Postgres and Kafka
 * of ops/stack: "widget.created" creates a widget (and takes one unit of a
 * product's stock, an effect that would show if it ran twice), publishing
 * "widget.status.changed" NEW through the outbox; that event, consumed from
 * the same topic, drives the automatic step NEW -> DONE. Its execution,
 * WidgetProcess, and its history live in tables of its own (widgets,
 * widget_executions, widget_history), created by the test script in its
 * scratch database: the runtime knows no table of the order domain.
 *
 * A widget.created whose product_id is "explode" makes its step fail
 * (OF_EINVAL) every time: the runtime must dead-letter that event alone. */
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
    int status;          /* status.changed: status announced */
    int version;         /* status.changed: version announced */
} widget_event;

enum { W_NONE, W_NEW, W_DONE, W_STATE_COUNT };
enum { W_AUTO = OF_TRIGGER_AUTO, W_CREATED, W_TRIGGER_COUNT };
enum { W_STEP_CREATE, W_STEP_FINISH, W_STEP_COUNT };
enum { W_X_NONE = OF_EXEC_NONE, W_X_PROCESS, W_X_COUNT };

static int create_widget(of_step_ctx *s);
static int widget_changed(of_step_ctx *s, int from, int to, of_message *out);

// clang-format off
static const of_transition widget_rows[] = {
    /* from    trigger    to      step           execution    starts  execution after    then */
    {W_NONE,   W_CREATED, W_NEW,  W_STEP_CREATE, W_X_PROCESS, true,   OF_EXEC_RUNNING,   OF_EXEC_NONE},
    {W_NEW,    W_AUTO,    W_DONE, W_STEP_FINISH, W_X_PROCESS, false,  OF_EXEC_SUCCEEDED, OF_EXEC_NONE},
};
// clang-format on

static const char *const widget_states[W_STATE_COUNT] = {"", "NEW", "DONE"};
static const char *const widget_triggers[W_TRIGGER_COUNT] = {"auto", "widget.created"};
static const char *const widget_step_names[W_STEP_COUNT] = {"CreateWidget", "FinishWidget"};
static const char *const widget_executions[W_X_COUNT] = {"", "WidgetProcess"};

/* Set-based, like every machine's statements (machine.h): one array per column. */
static const of_db_stmt widget_machine_stmts[OF_SQL_COUNT] = {
    [OF_SQL_LOAD] = {"widget_load",
                     "select id::text, status, version, correlation_id, '',"
                     " coalesce(traceparent, '') from widgets where id = any($1::uuid[])"
                     " order by id for update",
                     false},
    [OF_SQL_SET_STATE] =
        {"widget_set_state",
         "with u as (update widgets w set status = t.status,"
         " version = w.version + 1, status_reason = nullif(t.reason, ''),"
         " updated_at = now(), traceparent = t.traceparent from unnest($1::uuid[],"
         " $2::text[], $3::integer[], $4::text[], $5::text[])"
         " as t(id, status, version, reason, traceparent)"
         " where w.id = any($1) and w.id = t.id and w.version = t.version returning 1)"
         " select of_expect_rows((select count(*) from u), cardinality($1),"
         " 'widgets')",
         false},
    [OF_SQL_EXEC_START] = {"widget_exec_start",
                           "insert into widget_executions (id, machine, widget_id, scope, status,"
                           " current_state, input, error) select t.id, t.machine, t.entity,"
                           " nullif(t.scope, ''), t.status, t.state, t.input::jsonb,"
                           " nullif(t.error, '') from unnest($1::uuid[], $2::text[], $3::uuid[],"
                           " $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])"
                           " as t(id, machine, entity, scope, status, state, input, error)",
                           true},
    [OF_SQL_EXEC_UPDATE] = {"widget_exec_update",
                            "update widget_executions x set current_state = t.state,"
                            " status = t.status, error = coalesce(nullif(t.error, ''), x.error)"
                            " from unnest($1::text[], $2::uuid[], $3::text[], $4::text[],"
                            " $5::text[], $6::text[]) as t(machine, entity, scope, state, status,"
                            " error) where x.widget_id = any($2) and x.widget_id = t.entity"
                            " and x.machine = t.machine",
                            false},
    [OF_SQL_HISTORY] =
        {"widget_history",
         "insert into widget_history (execution_id, seq, step, from_state,"
         " to_state, outcome, event_id, topic, partition, \"offset\", detail, trace_id,"
         " span_id, parent_span_id)"
         " select x.id, coalesce((select max(h.seq) from widget_history h"
         " where h.execution_id = x.id), 0)"
         " + row_number() over (partition by x.id order by t.n), t.step,"
         " nullif(t.from_state, ''), nullif(t.to_state, ''), t.outcome,"
         " t.event_id, t.topic, t.part, t.off, t.detail::jsonb, t.trace, t.span, t.parent"
         " from unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[],"
         " $6::text[], $7::text[], $8::text[], $9::text[], $10::integer[],"
         " $11::bigint[], $12::text[], $13::text[], $14::text[], $15::text[])"
         " with ordinality as t(machine, entity, scope, step, from_state, to_state,"
         " outcome, event_id, topic, part, off, detail, trace, span, parent, n)"
         " cross join lateral (select e.id from widget_executions e"
         " where e.widget_id = t.entity and (t.machine = '' or e.machine = t.machine)"
         " order by e.id desc limit 1) x",
         false},
};

static const of_machine widget_machine = {
    .name = "widget",
    .entity = "widget",
    .rows = widget_rows,
    .n_rows = sizeof widget_rows / sizeof widget_rows[0],
    .states = widget_states,
    .n_states = W_STATE_COUNT,
    .triggers = widget_triggers,
    .n_triggers = W_TRIGGER_COUNT,
    .steps = widget_step_names,
    .n_steps = W_STEP_COUNT,
    .executions = widget_executions,
    .n_executions = W_X_COUNT,
    .stmts = widget_machine_stmts,
    .changed = widget_changed,
};

static const of_step_impl widget_steps[W_STEP_COUNT] = {
    [W_STEP_CREATE] = {true, create_widget},
    [W_STEP_FINISH] = {true, NULL},
};

static const of_db_stmt widget_stmts[] = {
    {"widget_insert",
     "insert into widgets (id, status, version, correlation_id, product_id)"
     " values ($1::uuid, $2, 1, $3, $4)",
     true},
    {"widget_take_stock", "update products set stock = stock - 1 where id = $1", false},
};

static const char *const topics[] = {TOPIC};

static int create_widget(of_step_ctx *s)
{
    widget_event *e = s->it->user;
    const char *v1[4] = {s->e->id, "NEW", s->e->correlation, e->product_id};
    const char *v2[1] = {e->product_id};
    int rc;
    /* A deterministic failure, for the test of the failure classes. */
    if (strcmp(e->product_id, "explode") == 0)
        return OF_EINVAL;
    rc = of_db_pipeline_add(s->wp, "widget_insert", 4, v1);
    if (rc == OF_OK)
        rc = of_db_pipeline_add(s->wp, "widget_take_stock", 1, v2);
    if (rc != OF_OK)
        return rc;
    s->input = cJSON_CreateObject();
    if (s->input == NULL || cJSON_AddStringToObject(s->input, "product_id", e->product_id) == NULL)
        return OF_ENOMEM;
    return OF_OK;
}

static int widget_changed(of_step_ctx *s, int from, int to, of_message *out)
{
    char id[OF_UUID_STRLEN + 1], topic[256];
    of_event_error err;
    cJSON *data = cJSON_CreateObject();
    int rc = OF_ENOMEM;
    if (data == NULL || of_uuid_v7(id) != 0)
        goto out;
    if (cJSON_AddStringToObject(data, "widget_id", s->e->id) == NULL ||
        cJSON_AddStringToObject(data, "status", widget_states[to]) == NULL ||
        (from != W_NONE ? cJSON_AddStringToObject(data, "previous_status", widget_states[from])
                        : cJSON_AddNullToObject(data, "previous_status")) == NULL ||
        cJSON_AddNumberToObject(data, "version", s->new_version) == NULL ||
        cJSON_AddStringToObject(data, "correlation_id", s->e->correlation) == NULL)
        goto out;
    of_event_attrs attrs = {id, "widget.status.changed", s->b->w->source, s->e->id, NULL};
    rc = of_event_build(out, of_worker_topic(s->b->w, TOPIC, topic, sizeof topic), s->e->id, &attrs,
                        data, &err);
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
            of_machine_state_parse(&widget_machine, st->valuestring, &e->status) != OF_OK ||
            !cJSON_IsNumber(v))
            return of_event_error_set(err, OF_EVENT_ERR_WRONG_TYPE, "bad widget.status.changed");
        snprintf(e->widget_id, sizeof e->widget_id, "%s", id->valuestring);
        e->version = v->valueint;
        return 0;
    }
    return of_event_error_set(err, OF_EVENT_ERR_UNKNOWN_TYPE, "unknown event type \"%s\"",
                              it->ev.type);
}

static int widget_route(void *ctx, const of_worker_item *it, of_route *r)
{
    const widget_event *e = it->user;
    if (e->created) {
        r->kind = OF_ROUTE_CREATE;
        r->trigger = W_CREATED;
    } else {
        r->kind = OF_ROUTE_ADVANCE;
        r->entity_id = e->widget_id;
        r->state = e->status;
        r->version = e->version;
    }
    return OF_OK;
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
    static const of_worker_handler h = {
        .name = "widget-worker",
        .topics = topics,
        .n_topics = 1,
        .stmts = widget_stmts,
        .n_stmts = sizeof widget_stmts / sizeof widget_stmts[0],
        .machine = &widget_machine,
        .steps = widget_steps,
        .decode = widget_decode,
        .route = widget_route,
        .item_free = widget_free,
    };
    of_config_load_or_exit(items, sizeof items / sizeof items[0], &s, argc, argv, NULL,
                           "widget-worker", "test worker for the common runtime");
    return of_worker_run(&h, &s.w);
}
