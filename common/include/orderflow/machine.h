/* machine.h: state machines as data, and the one function that applies a transition.
 *
 * A machine is a table of transitions (from, trigger, to, step) over the
 * status column of one entity table (orders, returns). Each row also says
 * which execution (the Step Functions state machine it replaces) the step
 * belongs to and what becomes of that execution. of_machine_apply() is the
 * only place an entity's status changes: it finds the row, runs the step's
 * function (which appends the step's effects and may choose among the rows'
 * targets), then appends the guarded status update, the execution update,
 * the execution_history row and the outgoing status event, all to the
 * batch's write pipeline, i.e. into one transaction with the inbox row the
 * runtime adds. The same table renders the diagrams (of_machine_render).
 *
 * Entity tables need: id uuid, status text, version integer, status_reason
 * text, updated_at timestamptz. The statements come from OF_MACHINE_STMTS.
 *
 * Ownership: tables are static data; of_step_ctx lives for one event and
 * its detail tree is freed by of_step_ctx_free(). */
#ifndef ORDERFLOW_MACHINE_H
#define ORDERFLOW_MACHINE_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>

#include "orderflow/worker.h"

#define OF_TRIGGER_AUTO "auto" /* fired by the entity's own status event: the next step */
#define OF_STATE_NONE   ""     /* "from" of the transition that creates the entity */

#define OF_MACHINE_OK      0
#define OF_MACHINE_ILLEGAL 1 /* no transition for (from, trigger): nothing was appended */

typedef struct of_step_ctx of_step_ctx;
/* A step's effects. Appends SQL to s->wp, may set s->to (required when the
 * table has several targets for the row's (from, trigger)), s->reason and
 * add to s->detail. Returns 0 or a negative error (the transaction is retried). */
typedef int (*of_step_fn)(of_step_ctx *s);

typedef struct of_transition {
    const char *from;      /* status before, or OF_STATE_NONE when the step creates the entity */
    const char *trigger;   /* event type, update status, or OF_TRIGGER_AUTO */
    const char *to;        /* status after */
    const char *step;      /* step name for history, e.g. "UpdateInventory" */
    const char *execution; /* execution the step belongs to, e.g. "OrderProcess" */
    bool starts_execution; /* the step starts that execution */
    const char
        *exec_status; /* execution status after: RUNNING, SUCCEEDED, FAILED, ABORTED, TIMED_OUT */
    const char *then_starts; /* another execution that starts in state `to`, or NULL */
} of_transition;

/* A worker's implementation of one step. */
typedef struct of_step_impl {
    const char *step; /* step name as in the table; NULL ends a list */
    of_step_fn fn;    /* effects; NULL for a step that only moves the status */
} of_step_impl;

typedef struct of_machine of_machine;
/* Builds the "<entity>.status.changed" event for a transition into out. */
typedef int (*of_changed_event_fn)(of_step_ctx *s, const char *from, const char *to,
                                   int new_version, of_message *out);

struct of_machine {
    const char *name;            /* machine name, e.g. "order" (statement prefix) */
    const char *entity;          /* what the status belongs to, for messages: "order", "return" */
    const of_transition *rows;   /* the transition table */
    size_t n_rows;               /* rows */
    of_changed_event_fn changed; /* builds the status event; NULL publishes none */
};

/* One event's application of one transition. */
struct of_step_ctx {
    const of_machine *m;     /* the machine */
    const of_transition *t;  /* the matched row (set by of_machine_apply) */
    of_worker_batch *b;      /* batch (for of_worker_emit) */
    of_worker_item *it;      /* the causing event */
    of_db_pipeline *wp;      /* write pipeline of the transaction */
    char entity_id[37];      /* id of the order or return */
    char order_id[37];       /* order the execution belongs to */
    char return_id[37];      /* return id for return machines, "" otherwise */
    char correlation_id[65]; /* ce_id of the event that started the chain */
    int version;             /* entity version before the transition (0 when created) */
    const char *to;          /* target chosen by the step (NULL: the row's) */
    char reason[1025];       /* status reason (OUT_OF_STOCK, or an update's text), or "" */
    cJSON *detail;           /* history detail object, created on demand */
    cJSON *input;            /* execution input when the step starts one, or NULL */
    void *user;              /* the worker's loaded state for this entity */
    int new_version;         /* version after (set by of_machine_apply) */
};

/* Prepared statements for a machine named NAME over TABLE, to list in the worker's statements. */
#define OF_MACHINE_STMTS(NAME, TABLE)                                                              \
    {NAME "_set_state",                                                                            \
     "with u as (update " TABLE " set status = $2, version = version + 1,"                         \
     " status_reason = nullif($4, ''), updated_at = now() where id = $1::uuid and version = $3"    \
     " returning 1) select of_expect_one((select count(*) from u),"                                \
     " '" TABLE " ' || $1 || ' at version ' || $3)"},                                              \
        OF_MACHINE_COMMON_STMTS(NAME)
#define OF_MACHINE_COMMON_STMTS(NAME)                                                              \
    {NAME "_exec_start",                                                                           \
     "insert into executions (id, machine, order_id, return_id, status, current_state, input,"     \
     " stopped_at, error) values ($1::uuid, $2, $3::uuid, nullif($4, '')::uuid, $5, $6,"           \
     " $7::jsonb, case when $5 = 'RUNNING' then null else now() end, nullif($8, ''))"},            \
        {NAME "_exec_update", "with u as (update executions set current_state = $4, status = $5,"  \
                              " stopped_at = case when $5 = 'RUNNING' then null else now() end,"   \
                              " error = coalesce(nullif($6, ''), error) where machine = $1 and"    \
                              " (case when $3 = '' then order_id = $2::uuid and return_id is null" \
                              " else return_id = nullif($3, '')::uuid end) returning 1)"           \
                              " select of_expect_one((select count(*) from u), 'execution ' || "   \
                              "$1 || ' of ' || $2 || $3)"},                                        \
    {                                                                                              \
        NAME "_history",                                                                           \
            "insert into execution_history (execution_id, seq, step, from_state, to_state, "       \
            "outcome,"                                                                             \
            " event_id, topic, partition, \"offset\", detail)"                                     \
            " select e.id, coalesce((select max(h.seq) from execution_history h"                   \
            " where h.execution_id = e.id), 0) + 1, $4, nullif($5, ''), nullif($6, ''), $7, $8, "  \
            "$9,"                                                                                  \
            " $10::integer, $11::bigint, $12::jsonb from executions e where"                       \
            " (case when $3 = '' then e.order_id = $2::uuid and e.return_id is null"               \
            " else e.return_id = nullif($3, '')::uuid end) and ($1 = '' or e.machine = $1)"        \
            " order by e.started_at desc, e.id desc limit 1"                                       \
    }

/* Rows whose (from, trigger) match, or NULL; *n receives how many (they are
 * consecutive in the table). */
const of_transition *of_machine_find(const of_machine *m, const char *from, const char *trigger,
                                     size_t *n);
/* True when the table has the row (from, trigger, to). */
bool of_machine_allows(const of_machine *m, const char *from, const char *trigger, const char *to);
/* Checks the table: consecutive rows per (from, trigger), one step and
 * execution per (from, trigger), known execution statuses. Returns 0 or -1
 * and writes the reason to err. */
int of_machine_validate(const of_machine *m, char *err, size_t errsize);

/* Applies (from, trigger) to the entity described by s, running the step
 * with its function from impls (a list ending with {NULL, NULL}). Returns
 * OF_MACHINE_OK, OF_MACHINE_ILLEGAL (no such transition; nothing appended, see
 * of_machine_record) or a negative error, also when the step is not in impls
 * (this worker does not run it). */
int of_machine_apply(const of_machine *m, const of_step_impl *impls, of_step_ctx *s,
                     const char *from, const char *trigger) __attribute__((warn_unused_result));
/* True when impls runs the step of (from, trigger). */
bool of_machine_runs(const of_machine *m, const of_step_impl *impls, const char *from,
                     const char *trigger);
/* Records an event the machine did not accept (or that did not apply) in the
 * entity's latest execution history, with outcome "rejected" or "ignored",
 * and changes nothing else. */
int of_machine_record(const of_machine *m, of_step_ctx *s, const char *outcome, const char *from,
                      const char *trigger, const char *reason) __attribute__((warn_unused_result));
/* Releases s->detail and s->input. */
void of_step_ctx_free(of_step_ctx *s);

typedef enum of_render_format { OF_RENDER_DOT, OF_RENDER_MERMAID } of_render_format;
/* Writes the machine's diagram, one edge per row, labelled trigger / step. */
void of_machine_render(const of_machine *m, of_render_format format, FILE *out);

#endif
