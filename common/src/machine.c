/* machine.c: applies table-driven transitions as SQL appended to a batch transaction. */
#include "orderflow/machine.h"

#include "orderflow/log.h"
#include "orderflow/uuid.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static const char *const exec_statuses[] = {"RUNNING", "SUCCEEDED", "FAILED", "ABORTED",
                                            "TIMED_OUT"};

const of_transition *of_machine_find(const of_machine *m, const char *from, const char *trigger,
                                     size_t *n)
{
    const of_transition *first = NULL;
    size_t count = 0;
    for (size_t i = 0; i < m->n_rows; i++) {
        const of_transition *t = &m->rows[i];
        if (strcmp(t->from, from) == 0 && strcmp(t->trigger, trigger) == 0) {
            if (first == NULL)
                first = t;
            count++;
        }
    }
    if (n != NULL)
        *n = count;
    return first;
}

bool of_machine_allows(const of_machine *m, const char *from, const char *trigger, const char *to)
{
    for (size_t i = 0; i < m->n_rows; i++) {
        const of_transition *t = &m->rows[i];
        if (strcmp(t->from, from) == 0 && strcmp(t->trigger, trigger) == 0 &&
            strcmp(t->to, to) == 0)
            return true;
    }
    return false;
}

static bool known_exec_status(const char *s)
{
    for (size_t i = 0; i < sizeof exec_statuses / sizeof exec_statuses[0]; i++)
        if (s != NULL && strcmp(s, exec_statuses[i]) == 0)
            return true;
    return false;
}

int of_machine_validate(const of_machine *m, char *err, size_t errsize)
{
    for (size_t i = 0; i < m->n_rows; i++) {
        const of_transition *t = &m->rows[i];
        size_t n = 0;
        const of_transition *first = of_machine_find(m, t->from, t->trigger, &n);
        if (!known_exec_status(t->exec_status)) {
            snprintf(err, errsize, "row %zu: unknown execution status \"%s\"", i,
                     t->exec_status ? t->exec_status : "(null)");
            return -1;
        }
        if (first + n - 1 < t) {
            snprintf(err, errsize, "row %zu: rows for (\"%s\", \"%s\") are not consecutive", i,
                     t->from, t->trigger);
            return -1;
        }
        if (strcmp(first->execution, t->execution) != 0 || strcmp(first->step, t->step) != 0) {
            snprintf(err, errsize, "row %zu: rows for (\"%s\", \"%s\") differ in step or execution",
                     i, t->from, t->trigger);
            return -1;
        }
    }
    return 0;
}

static cJSON *detail_of(of_step_ctx *s)
{
    if (s->detail == NULL)
        s->detail = cJSON_CreateObject();
    return s->detail;
}

/* Appends the execution_history insert. */
static int add_history(of_step_ctx *s, const char *execution, const char *step, const char *from,
                       const char *to, const char *outcome)
{
    char stmt[64], part[16], off[24];
    char *detail = NULL;
    const of_worker_item *it = s->it;
    int rc;
    cJSON *d = detail_of(s);
    if (d == NULL)
        return OF_DB_ENOMEM;
    if (s->reason[0] != '\0' && cJSON_GetObjectItemCaseSensitive(d, "reason") == NULL &&
        cJSON_AddStringToObject(d, "reason", s->reason) == NULL)
        return OF_DB_ENOMEM;
    detail = cJSON_PrintUnformatted(d);
    if (detail == NULL)
        return OF_DB_ENOMEM;
    snprintf(stmt, sizeof stmt, "%s_history", s->m->name);
    snprintf(part, sizeof part, "%" PRId32, it->rec.partition);
    snprintf(off, sizeof off, "%" PRId64, it->rec.offset);
    const char *values[12] = {execution ? execution : "",
                              s->order_id,
                              s->return_id,
                              step,
                              from,
                              to,
                              outcome,
                              it->parsed ? it->ev.id : NULL,
                              it->rec.topic,
                              it->rec.partition >= 0 ? part : NULL,
                              it->rec.offset >= 0 ? off : NULL,
                              detail};
    rc = of_db_pipeline_add(s->wp, stmt, 12, values);
    free(detail);
    return rc;
}

static int add_exec_start(of_step_ctx *s, const char *execution, const char *state,
                          const char *status)
{
    char stmt[64], id[OF_UUID_STRLEN + 1];
    char *input = NULL;
    int rc;
    if (of_uuid_v7(id) != 0)
        return OF_DB_ENOMEM;
    if (s->input != NULL && (input = cJSON_PrintUnformatted(s->input)) == NULL)
        return OF_DB_ENOMEM;
    snprintf(stmt, sizeof stmt, "%s_exec_start", s->m->name);
    /* An execution that fails in its first step records why, as a later failure does. */
    const char *error = strcmp(status, "FAILED") == 0 ? s->reason : "";
    const char *values[8] = {id, execution, s->order_id, s->return_id, status, state, input, error};
    rc = of_db_pipeline_add(s->wp, stmt, 8, values);
    free(input);
    return rc;
}

static int add_exec_update(of_step_ctx *s, const char *execution, const char *state,
                           const char *status, const char *error)
{
    char stmt[64];
    snprintf(stmt, sizeof stmt, "%s_exec_update", s->m->name);
    const char *values[6] = {execution, s->order_id, s->return_id,
                             state,     status,      error ? error : ""};
    return of_db_pipeline_add(s->wp, stmt, 6, values);
}

static const of_step_impl *find_impl(const of_step_impl *impls, const char *step)
{
    for (const of_step_impl *i = impls; i != NULL && i->step != NULL; i++)
        if (strcmp(i->step, step) == 0)
            return i;
    return NULL;
}

bool of_machine_runs(const of_machine *m, const of_step_impl *impls, const char *from,
                     const char *trigger)
{
    const of_transition *t = of_machine_find(m, from, trigger, NULL);
    return t != NULL && find_impl(impls, t->step) != NULL;
}

int of_machine_apply(const of_machine *m, const of_step_impl *impls, of_step_ctx *s,
                     const char *from, const char *trigger)
{
    size_t n = 0;
    const of_transition *t = of_machine_find(m, from, trigger, &n);
    const of_step_impl *impl;
    const char *to;
    char stmt[64], ver[16];
    int rc;

    if (t == NULL)
        return OF_MACHINE_ILLEGAL;
    impl = find_impl(impls, t->step);
    if (impl == NULL) {
        of_log_error("step \"%s\" of the %s machine is not run by this worker", t->step, m->name);
        return -OF_DB_ESTATE;
    }
    s->m = m;
    s->t = t;
    s->to = NULL;
    if (impl->fn != NULL) {
        rc = impl->fn(s);
        if (rc != 0)
            return rc < 0 ? rc : -rc;
    }
    to = s->to != NULL ? s->to : (n == 1 ? t->to : NULL);
    if (to == NULL || !of_machine_allows(m, from, trigger, to)) {
        of_log_error("step \"%s\" chose \"%s\", which the %s machine does not allow from \"%s\" on "
                     "\"%s\"",
                     t->step, to ? to : "(nothing)", m->name, from, trigger);
        return -OF_DB_ESTATE;
    }
    /* The matched row for the chosen target carries the execution outcome. */
    for (size_t i = 0; i < n; i++) {
        if (strcmp(t[i].to, to) == 0) {
            t = &t[i];
            break;
        }
    }
    s->t = t;
    s->to = to;
    s->new_version = s->version + 1;
    if (from[0] != '\0') {
        /* Creation steps insert the entity themselves at version 1. */
        snprintf(stmt, sizeof stmt, "%s_set_state", m->name);
        snprintf(ver, sizeof ver, "%d", s->version);
        const char *values[4] = {s->entity_id, to, ver, s->reason};
        rc = of_db_pipeline_add(s->wp, stmt, 4, values);
        if (rc != 0)
            return rc;
    }
    if (t->starts_execution)
        rc = add_exec_start(s, t->execution, to, t->exec_status);
    else
        rc = add_exec_update(s, t->execution, to, t->exec_status,
                             strcmp(t->exec_status, "FAILED") == 0 ? s->reason : NULL);
    if (rc == 0)
        rc = add_history(s, t->execution, t->step, from, to, "applied");
    if (rc == 0 && t->then_starts != NULL) {
        cJSON *saved = s->input;
        s->input = NULL;
        rc = add_exec_start(s, t->then_starts, to, "RUNNING");
        s->input = saved;
        if (rc == 0)
            rc = add_history(s, t->then_starts, "Start", from, to, "applied");
    }
    if (rc == 0 && m->changed != NULL) {
        of_message ev = {0};
        rc = m->changed(s, from, to, s->new_version, &ev);
        if (rc == 0)
            rc = of_worker_emit(s->b, s->wp, &ev);
        of_message_free(&ev);
    }
    return rc;
}

int of_machine_record(const of_machine *m, of_step_ctx *s, const char *outcome, const char *from,
                      const char *trigger, const char *reason)
{
    cJSON *d;
    s->m = m;
    d = detail_of(s);
    if (d == NULL || cJSON_AddStringToObject(d, "trigger", trigger) == NULL ||
        (reason != NULL && cJSON_AddStringToObject(d, "reason", reason) == NULL))
        return OF_DB_ENOMEM;
    return add_history(s, NULL, trigger, from, NULL, outcome);
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
        const char *from = t->from[0] ? t->from : NULL;
        if (format == OF_RENDER_DOT)
            fprintf(out, "  %s -> %s [label=\"%s / %s\"];\n", from ? from : "start", t->to,
                    t->trigger, t->step);
        else
            fprintf(out, "    %s --> %s : %s / %s\n", from ? from : "[*]", t->to, t->trigger,
                    t->step);
    }
    if (format == OF_RENDER_DOT)
        fprintf(out, "}\n");
}
