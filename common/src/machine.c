/* machine.c: checks transition tables and applies their transitions as SQL of a batch transaction.
 */
#include "orderflow/machine.h"

#include "orderflow/log.h"
#include "orderflow/uuid.h"
#include "orderflow/worker.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static const char *const exec_status_names[] = {
    [OF_EXEC_RUNNING] = "RUNNING", [OF_EXEC_SUCCEEDED] = "SUCCEEDED", [OF_EXEC_FAILED] = "FAILED",
    [OF_EXEC_ABORTED] = "ABORTED", [OF_EXEC_TIMED_OUT] = "TIMED_OUT",
};
#define N_EXEC_STATUS (sizeof exec_status_names / sizeof exec_status_names[0])

static const char *const sql_roles[OF_SQL_COUNT] = {
    [OF_SQL_LOAD] = "load",
    [OF_SQL_SET_STATE] = "set_state",
    [OF_SQL_EXEC_START] = "exec_start",
    [OF_SQL_EXEC_UPDATE] = "exec_update",
    [OF_SQL_HISTORY] = "history",
};

const char *of_machine_stmt(const of_machine *m, of_machine_sql role, char *buf, size_t size)
{
    snprintf(buf, size, "%s_%s", m->name, sql_roles[role]);
    return buf;
}

static const char *name_in(const char *const *names, size_t n, int i)
{
    return i >= 0 && (size_t)i < n && names[i] != NULL ? names[i] : "?";
}

const char *of_machine_state_name(const of_machine *m, int state)
{
    return name_in(m->states, m->n_states, state);
}

const char *of_machine_trigger_name(const of_machine *m, int trigger)
{
    return name_in(m->triggers, m->n_triggers, trigger);
}

int of_machine_state_parse(const of_machine *m, const char *name, int *out)
{
    for (size_t i = 1; i < m->n_states; i++) {
        if (m->states[i] != NULL && strcmp(m->states[i], name) == 0) {
            *out = (int)i;
            return OF_OK;
        }
    }
    return OF_EINVAL;
}

const of_transition *of_machine_find(const of_machine *m, int from, int trigger, size_t *n)
{
    const of_transition *first = NULL;
    size_t count = 0;
    for (size_t i = 0; i < m->n_rows; i++) {
        const of_transition *t = &m->rows[i];
        if (t->from == from && t->trigger == trigger) {
            if (first == NULL)
                first = t;
            count++;
        }
    }
    if (n != NULL)
        *n = count;
    return first;
}

bool of_machine_allows(const of_machine *m, int from, int trigger, int to)
{
    size_t n = 0;
    const of_transition *t = of_machine_find(m, from, trigger, &n);
    for (size_t i = 0; t != NULL && i < n; i++)
        if (t[i].to == to)
            return true;
    return false;
}

static bool in_range(int v, size_t n, int lowest)
{
    return v >= lowest && (size_t)v < n;
}

/* Checks one row against the machine's enumerations. */
static int validate_row(const of_machine *m, size_t i, char *err, size_t errsize)
{
    const of_transition *t = &m->rows[i];
    if (!in_range(t->from, m->n_states, 0) || !in_range(t->to, m->n_states, 1)) {
        snprintf(err, errsize, "row %zu: state %d or %d is not a state of the %s machine", i,
                 t->from, t->to, m->name);
        return OF_EINVAL;
    }
    if (!in_range(t->trigger, m->n_triggers, 0) || !in_range(t->step, m->n_steps, 0)) {
        snprintf(err, errsize, "row %zu: trigger %d or step %d is not one of the %s machine", i,
                 t->trigger, t->step, m->name);
        return OF_EINVAL;
    }
    if (!in_range(t->execution, m->n_executions, 1) ||
        !in_range(t->then_starts, m->n_executions, 0) || (size_t)t->status >= N_EXEC_STATUS) {
        snprintf(err, errsize, "row %zu: unknown execution or execution status", i);
        return OF_EINVAL;
    }
    if ((t->from == OF_STATE_NONE) != t->starts) {
        snprintf(err, errsize, "row %zu: only a row from no state starts its execution", i);
        return OF_EINVAL;
    }
    return OF_OK;
}

/* Every entry from `from` on has a non-empty name. */
static bool names_ok(const char *const *names, size_t n, size_t from)
{
    for (size_t i = from; i < n; i++)
        if (names == NULL || names[i] == NULL || names[i][0] == '\0')
            return false;
    return true;
}

int of_machine_validate(const of_machine *m, char *err, size_t errsize)
{
    bool reached[64] = {false};
    if (m->n_states == 0 || m->n_states > sizeof reached / sizeof reached[0] ||
        m->n_triggers == 0 || m->n_executions < 2 || m->stmts == NULL) {
        snprintf(err, errsize, "the %s machine lacks states, triggers, executions or statements",
                 m->name);
        return OF_EINVAL;
    }
    if (!names_ok(m->states, m->n_states, 1) || !names_ok(m->triggers, m->n_triggers, 0) ||
        !names_ok(m->steps, m->n_steps, 0) || !names_ok(m->executions, m->n_executions, 1)) {
        snprintf(err, errsize, "a state, trigger, step or execution of the %s machine has no name",
                 m->name);
        return OF_EINVAL;
    }
    for (size_t i = 0; i < m->n_rows; i++) {
        const of_transition *t = &m->rows[i];
        size_t n = 0;
        int rc = validate_row(m, i, err, errsize);
        if (rc != OF_OK)
            return rc;
        const of_transition *first = of_machine_find(m, t->from, t->trigger, &n);
        if (first + n - 1 < t) {
            snprintf(err, errsize, "row %zu: rows for (%s, %s) are not consecutive", i,
                     of_machine_state_name(m, t->from), of_machine_trigger_name(m, t->trigger));
            return OF_EINVAL;
        }
        if (first->execution != t->execution || first->step != t->step) {
            snprintf(err, errsize, "row %zu: rows for (%s, %s) differ in step or execution", i,
                     of_machine_state_name(m, t->from), of_machine_trigger_name(m, t->trigger));
            return OF_EINVAL;
        }
        reached[t->to] = true;
    }
    for (size_t i = 1; i < m->n_states; i++) {
        if (!reached[i]) {
            snprintf(err, errsize, "state %s of the %s machine is never reached", m->states[i],
                     m->name);
            return OF_EINVAL;
        }
    }
    return OF_OK;
}

static cJSON *detail_of(of_step_ctx *s)
{
    if (s->detail == NULL)
        s->detail = cJSON_CreateObject();
    return s->detail;
}

static const char *state_or_empty(const of_machine *m, int state)
{
    return state == OF_STATE_NONE ? "" : of_machine_state_name(m, state);
}

/* The step's span (see machine.h): a child of the event's traceparent, else
 * of the entity's last step, else the root of a new trace. */
static int begin_span(of_step_ctx *s)
{
    const of_worker_item *it = s->it;
    s->tracestate = "";
    s->parent_span[0] = '\0';
    if (it != NULL && it->parsed && it->ev.has_trace) {
        s->trace = it->ev.trace;
        memcpy(s->parent_span, it->ev.trace.span_id, sizeof s->parent_span);
        s->tracestate = it->ev.tracestate;
    } else if (s->e->trace.trace_id[0] != '\0') {
        s->trace = s->e->trace;
        memcpy(s->parent_span, s->e->trace.span_id, sizeof s->parent_span);
    } else {
        memset(&s->trace, 0, sizeof s->trace);
        s->trace.flags = OF_TRACE_FLAG_SAMPLED;
        if (of_trace_id_new(s->trace.trace_id) != OF_OK)
            return OF_ETRANSIENT;
    }
    return of_span_id_new(s->trace.span_id);
}

/* Adds the execution_history row: a span of the step's trace. */
static int add_history(of_step_ctx *s, const char *execution, const char *step, const char *from,
                       const char *to, const char *outcome, const char *span, const char *parent)
{
    char part[16], off[24];
    char *detail = NULL;
    const of_worker_item *it = s->it;
    int rc;
    cJSON *d = detail_of(s);
    if (d == NULL)
        return OF_ENOMEM;
    if (s->reason[0] != '\0' && cJSON_GetObjectItemCaseSensitive(d, "reason") == NULL &&
        cJSON_AddStringToObject(d, "reason", s->reason) == NULL)
        return OF_ENOMEM;
    detail = cJSON_PrintUnformatted(d);
    if (detail == NULL)
        return OF_ENOMEM;
    snprintf(part, sizeof part, "%" PRId32, it->rec.partition);
    snprintf(off, sizeof off, "%" PRId64, it->rec.offset);
    const char *values[15] = {execution,
                              s->e->id,
                              s->e->scope_id,
                              step,
                              from,
                              to,
                              outcome,
                              it->parsed ? it->ev.id : NULL,
                              it->rec.topic,
                              it->rec.partition >= 0 ? part : NULL,
                              it->rec.offset >= 0 ? off : NULL,
                              detail,
                              s->trace.trace_id,
                              span,
                              parent[0] != '\0' ? parent : NULL};
    rc = of_db_rows_add(&s->mrows[OF_SQL_HISTORY], values);
    free(detail);
    return rc;
}

static int add_exec_start(of_step_ctx *s, int execution, int state, of_exec_status status)
{
    char id[OF_UUID_STRLEN + 1];
    char *input = NULL;
    int rc;
    if (of_uuid_v7(id) != 0)
        return OF_ENOMEM;
    input = s->input != NULL ? cJSON_PrintUnformatted(s->input) : NULL;
    if (s->input != NULL && input == NULL)
        return OF_ENOMEM;
    /* An execution that fails in its first step records why, as a later failure does. */
    const char *error = status == OF_EXEC_FAILED ? s->reason : "";
    const char *values[8] = {id,
                             s->m->executions[execution],
                             s->e->id,
                             s->e->scope_id,
                             exec_status_names[status],
                             of_machine_state_name(s->m, state),
                             input,
                             error};
    rc = of_db_rows_add(&s->mrows[OF_SQL_EXEC_START], values);
    free(input);
    return rc;
}

static int add_exec_update(of_step_ctx *s, int execution, int state, of_exec_status status)
{
    const char *values[6] = {s->m->executions[execution],
                             s->e->id,
                             s->e->scope_id,
                             of_machine_state_name(s->m, state),
                             exec_status_names[status],
                             status == OF_EXEC_FAILED ? s->reason : ""};
    return of_db_rows_add(&s->mrows[OF_SQL_EXEC_UPDATE], values);
}

static int add_set_state(of_step_ctx *s, int to)
{
    char ver[16], tp[OF_TRACEPARENT_SIZE];
    snprintf(ver, sizeof ver, "%d", s->e->version);
    of_trace_format(&s->trace, tp);
    const char *values[5] = {s->e->id, of_machine_state_name(s->m, to), ver, s->reason, tp};
    return of_db_rows_add(&s->mrows[OF_SQL_SET_STATE], values);
}

static int note_applied(of_step_ctx *s)
{
    of_applied_list *l = s->applied;
    if (l == NULL)
        return OF_OK;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        of_applied *v = realloc(l->v, cap * sizeof *v);
        if (v == NULL)
            return OF_ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n].m = s->m;
    l->v[l->n].t = s->t;
    l->n++;
    return OF_OK;
}

bool of_machine_runs(const of_machine *m, const of_step_impl *impls, int from, int trigger)
{
    const of_transition *t = of_machine_find(m, from, trigger, NULL);
    return t != NULL && impls[t->step].runs;
}

/* Appends what the matched row t does besides the step's own effects. */
static int apply_row(of_step_ctx *s, int from)
{
    const of_transition *t = s->t;
    const of_machine *m = s->m;
    int rc = OF_OK;
    /* Creation steps insert the entity themselves at version 1. */
    if (from != OF_STATE_NONE)
        rc = add_set_state(s, t->to);
    if (rc == OF_OK && t->starts)
        rc = add_exec_start(s, t->execution, t->to, t->status);
    else if (rc == OF_OK)
        rc = add_exec_update(s, t->execution, t->to, t->status);
    if (rc == OF_OK)
        rc = add_history(s, m->executions[t->execution], m->steps[t->step], state_or_empty(m, from),
                         of_machine_state_name(m, t->to), "applied", s->trace.span_id,
                         s->parent_span);
    if (rc == OF_OK && t->then_starts != OF_EXEC_NONE) {
        /* The execution the step starts is a span of its own, a child of the step's. */
        char start_span[OF_SPAN_ID_SIZE];
        cJSON *saved = s->input;
        s->input = NULL;
        rc = add_exec_start(s, t->then_starts, t->to, OF_EXEC_RUNNING);
        s->input = saved;
        if (rc == OF_OK)
            rc = of_span_id_new(start_span);
        if (rc == OF_OK)
            rc = add_history(s, m->executions[t->then_starts], "Start", state_or_empty(m, from),
                             of_machine_state_name(m, t->to), "applied", start_span,
                             s->trace.span_id);
    }
    if (rc == OF_OK && m->changed != NULL) {
        of_message ev = {0};
        rc = m->changed(s, from, t->to, &ev);
        if (rc == OF_OK)
            rc = of_step_emit(s, &ev);
        of_message_free(&ev);
    }
    return rc;
}

int of_step_emit(of_step_ctx *s, of_message *m)
{
    int rc = of_trace_put(m, &s->trace, s->tracestate);
    if (rc == OF_OK)
        rc = of_worker_emit(s->b, m);
    return rc;
}

int of_machine_apply(of_step_ctx *s, const of_step_impl *impls, int trigger)
{
    const of_machine *m = s->m;
    int from = s->e->state;
    size_t n = 0;
    const of_transition *t = of_machine_find(m, from, trigger, &n);
    int rc;

    if (t == NULL)
        return OF_EILLEGAL;
    if (!impls[t->step].runs) {
        of_log_error("step \"%s\" of the %s machine is not run by this worker", m->steps[t->step],
                     m->name);
        return OF_ESTATE;
    }
    s->t = t;
    s->to = -1;
    /* Drawn before the step runs, so that what it publishes carries it. */
    rc = begin_span(s);
    if (rc != OF_OK)
        return rc;
    if (impls[t->step].fn != NULL) {
        rc = impls[t->step].fn(s);
        if (rc != OF_OK)
            return rc < 0 ? rc : OF_ESTATE;
    }
    int to = s->to >= 0 ? s->to : (n == 1 ? t->to : -1);
    /* The matched row for the chosen target carries the execution outcome. */
    const of_transition *row = NULL;
    for (size_t i = 0; i < n; i++)
        if (t[i].to == to)
            row = &t[i];
    if (row == NULL) {
        of_log_error(
            "step \"%s\" chose state %d, which the %s machine does not allow from %s on %s",
            m->steps[t->step], to, m->name, state_or_empty(m, from),
            of_machine_trigger_name(m, trigger));
        return OF_ESTATE;
    }
    s->t = row;
    s->to = to;
    s->new_version = s->e->version + 1;
    rc = apply_row(s, from);
    if (rc == OF_OK)
        rc = note_applied(s);
    if (rc == OF_OK) {
        s->e->state = to;
        s->e->version = s->new_version;
        s->e->trace = s->trace;
    }
    return rc;
}

int of_machine_record(of_step_ctx *s, const char *outcome, const char *trigger_name,
                      const char *reason)
{
    cJSON *d = detail_of(s);
    int rc = begin_span(s);
    if (rc != OF_OK)
        return rc;
    if (d == NULL || cJSON_AddStringToObject(d, "trigger", trigger_name) == NULL ||
        (reason != NULL && cJSON_AddStringToObject(d, "reason", reason) == NULL))
        return OF_ENOMEM;
    return add_history(s, "", trigger_name, state_or_empty(s->m, s->e->state), NULL, outcome,
                       s->trace.span_id, s->parent_span);
}

int of_step_rows(of_step_ctx *s, size_t set, const char *const *values)
{
    return of_db_rows_add(&s->rows[set], values);
}

void of_step_ctx_free(of_step_ctx *s)
{
    cJSON_Delete(s->detail);
    cJSON_Delete(s->input);
    s->detail = NULL;
    s->input = NULL;
}

void of_machine_render(const of_machine *m, of_render_format format, FILE *out)
{
    if (format == OF_RENDER_DOT) {
        fprintf(out, "digraph %s {\n  rankdir=LR;\n  node [shape=box, style=rounded];\n", m->name);
        fprintf(out, "  start [shape=point];\n");
    } else {
        fprintf(out, "stateDiagram-v2\n");
    }
    for (size_t i = 0; i < m->n_rows; i++) {
        const of_transition *t = &m->rows[i];
        const char *from = t->from != OF_STATE_NONE ? of_machine_state_name(m, t->from) : NULL;
        const char *to = of_machine_state_name(m, t->to);
        const char *trigger = of_machine_trigger_name(m, t->trigger);
        if (format == OF_RENDER_DOT)
            fprintf(out, "  %s -> %s [label=\"%s / %s\"];\n", from ? from : "start", to, trigger,
                    m->steps[t->step]);
        else
            fprintf(out, "    %s --> %s : %s / %s\n", from ? from : "[*]", to, trigger,
                    m->steps[t->step]);
    }
    if (format == OF_RENDER_DOT)
        fprintf(out, "}\n");
}
