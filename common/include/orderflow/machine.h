/* machine.h: state machines as checked data, and the one function that applies a transition.
 *
 * A machine is a table of transitions over the status column of one entity
 * table. States, triggers, steps and executions are small enumerations that
 * the machine names (state_names[STATE] is what the status column holds);
 * index 0 of states is "no state" (the "from" of the transition that creates
 * the entity) and index 0 of triggers is OF_TRIGGER_AUTO (the entity's own
 * status event: the next step). of_machine_validate() checks a table against
 * those names at start-up and in the unit tests.
 *
 * Each row also says which execution (the Step Functions state machine it
 * replaces) the step belongs to and what becomes of that execution.
 * of_machine_apply() is the only place an entity's status changes: it finds
 * the row, runs the worker's step function (which appends the step's effects
 * and may choose among the rows' targets), then appends the guarded status
 * update, the execution start or update, the execution_history row and the
 * machine's status event, all to the batch's write pipeline, i.e. into one
 * transaction with the inbox row the runtime adds. The same table renders
 * the diagrams (of_machine_render).
 *
 * The machine brings its own SQL (of_machine.stmts, named by of_machine_stmt)
 * so that its entity and scope columns are its own. Every statement but the
 * load is a row set (db.h): its parameters are arrays, one element per row,
 * and the runtime runs it once per wave of the batch (see apply.c):
 *   OF_SQL_LOAD        $1 text[] of entity ids; returns id, status, version,
 *                      correlation id, scope id ('' when none), traceparent of
 *                      the entity's last step ('' when none), locked, by id
 *   OF_SQL_SET_STATE   $1 entity ids, $2 statuses, $3 versions before, $4 reasons
 *                      ('' none), $5 traceparents (the step's span, to keep
 *                      with the entity); must update every row (the version
 *                      guard: of_expect_rows raises 40001 otherwise)
 *   OF_SQL_EXEC_START  $1 execution ids, $2 executions, $3 entity ids, $4 scope ids,
 *                      $5 execution statuses, $6 states, $7 inputs (json or NULL), $8 errors
 *   OF_SQL_EXEC_UPDATE $1 executions, $2 entity ids, $3 scope ids, $4 states,
 *                      $5 execution statuses, $6 errors ('' keeps the old one);
 *                      must update every row
 *   OF_SQL_HISTORY     $1 executions ('' = the entity's latest), $2 entity ids, $3 scope ids,
 *                      $4 steps, $5 froms, $6 tos, $7 outcomes, $8 ce_ids, $9 topics,
 *                      $10 partitions, $11 offsets, $12 details (json), $13 trace ids,
 *                      $14 span ids, $15 parent span ids (NULL for a trace's root),
 *                      as lowercase hex; rows of one execution get consecutive seq
 *                      numbers as they come
 * A wave holds at most one event per entity, so no statement sees one
 * entity twice; a wave runs the steps' statements, then exec start, exec
 * update, set state and history.
 *
 * Tracing (trace.h). Every history row is a span: of_machine_apply() and
 * of_machine_record() draw the step's span id before the step runs. Its trace
 * and parent are the event's traceparent when it carries a valid one; else
 * the entity's, as its last step left it (set state keeps the traceparent
 * with the entity; a new entity starts from its scope's, see worker.h
 * scope_trace); else a new trace, of which the step is the root. The "Start"
 * row of an execution a transition starts is a child span of the step's.
 * The status event and whatever a step publishes with of_step_emit() carry
 * ce_traceparent with the step's span and ce_tracestate as received, so the
 * step that event drives is a child of this one.
 *
 * Ownership: tables are static data; of_step_ctx lives for one event and
 * its detail and input trees are freed by of_step_ctx_free(). */
#ifndef ORDERFLOW_MACHINE_H
#define ORDERFLOW_MACHINE_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "orderflow/db.h"
#include "orderflow/error.h"
#include "orderflow/message.h"
#include "orderflow/trace.h"

#define OF_STATE_NONE   0 /* "no state": from of a creating transition */
#define OF_TRIGGER_AUTO 0 /* the entity's own status event drives the next step */
#define OF_EXEC_NONE    0 /* then_starts: no second execution */

#define OF_ID_SIZE          37   /* a UUID and its NUL */
#define OF_CORRELATION_SIZE 65   /* an id of up to 64 characters and its NUL */
#define OF_STEP_REASON_SIZE 1025 /* a status reason (256 code points of UTF-8) and its NUL */

/* What a transition does to its execution. */
typedef enum of_exec_status {
    OF_EXEC_RUNNING = 0,
    OF_EXEC_SUCCEEDED,
    OF_EXEC_FAILED,
    OF_EXEC_ABORTED,
    OF_EXEC_TIMED_OUT,
} of_exec_status;

/* One edge. Rows sharing (from, trigger) are adjacent and share their step
 * and execution; the step chooses among their targets. */
typedef struct of_transition {
    int from;              /* state before, or OF_STATE_NONE when the step creates the entity */
    int trigger;           /* trigger, or OF_TRIGGER_AUTO */
    int to;                /* state after */
    int step;              /* step (index into the machine's step names) */
    int execution;         /* execution the step belongs to (index, >= 1) */
    bool starts;           /* the step starts that execution */
    of_exec_status status; /* the execution's status after the step */
    int then_starts;       /* another execution that starts in state `to`, or OF_EXEC_NONE */
} of_transition;

/* The machine's statements, by role (see the parameter lists above). */
typedef enum of_machine_sql {
    OF_SQL_LOAD = 0,
    OF_SQL_SET_STATE,
    OF_SQL_EXEC_START,
    OF_SQL_EXEC_UPDATE,
    OF_SQL_HISTORY,
    OF_SQL_COUNT,
} of_machine_sql;

typedef struct of_machine of_machine;
typedef struct of_step_ctx of_step_ctx;

/* A step's effects. Adds rows to the worker's row sets (of_step_rows) or,
 * for rare statements, appends SQL to s->wp; may set s->to (required when the
 * table has several targets for the row's (from, trigger)), s->reason, and
 * add to s->detail. Returns 0 or a negative of_err: a transient one retries
 * the transaction, a permanent one dead-letters the event (see worker.h). */
typedef int (*of_step_fn)(of_step_ctx *s);

/* How a worker runs one step of a machine: a worker's array of these has
 * one entry per step, indexed by the machine's step enumeration, e.g.
 *     static const of_step_impl steps[WIDGET_STEP_COUNT] = {
 *         [WIDGET_STEP_CREATE] = {true, create_widget},
 *         [WIDGET_STEP_FINISH] = {true, NULL}, // only the status moves
 *     };
 * Steps left out (runs false) belong to another worker. */
typedef struct of_step_impl {
    bool runs;     /* this worker runs the step */
    of_step_fn fn; /* its effects, or NULL when the step only moves the status */
} of_step_impl;

/* A transition a batch applied, for the transitions metric. */
typedef struct of_applied {
    const of_machine *m;    /* machine */
    const of_transition *t; /* the row */
} of_applied;

/* The transitions of one transaction, in order (owned by the batch). */
typedef struct of_applied_list {
    of_applied *v; /* entries */
    size_t n;      /* used */
    size_t cap;    /* allocated */
} of_applied_list;

/* Builds the machine's status event for a transition into out (zeroed by the
 * caller). Returns 0 or a negative of_err. */
typedef int (*of_changed_event_fn)(of_step_ctx *s, int from, int to, of_message *out);

struct of_machine {
    const char *name;              /* machine name, e.g. "widget": statement prefix */
    const char *entity;            /* what the status belongs to, for messages: "widget" */
    const of_transition *rows;     /* the transition table */
    size_t n_rows;                 /* rows */
    const char *const *states;     /* state names; [0] is "" (no state) */
    size_t n_states;               /* states, including 0 */
    const char *const *triggers;   /* trigger names; [0] is "auto" */
    size_t n_triggers;             /* triggers, including 0 */
    const char *const *steps;      /* step names, e.g. "CreateWidget" */
    size_t n_steps;                /* steps */
    const char *const *executions; /* execution names; [0] is "" (none) */
    size_t n_executions;           /* executions, including 0 */
    const of_db_stmt *stmts;       /* OF_SQL_COUNT statements, indexed by of_machine_sql */
    of_changed_event_fn changed;   /* builds the status event; NULL publishes none */
};

/* What the batch routine knows of one entity (loaded or created in this batch). */
typedef struct of_entity {
    char id[OF_ID_SIZE];                   /* entity id */
    char scope_id[OF_ID_SIZE];             /* the entity this one belongs to, or "" */
    int state;                             /* current state (advanced in memory) */
    int version;                           /* current version (advanced in memory) */
    char correlation[OF_CORRELATION_SIZE]; /* ce_id of the event that started the chain */
    of_trace trace;                        /* its last step's span (advanced in memory), or
                                              trace_id "" when none is known */
    void *user;                            /* the worker's data for it, or NULL */
    int wave;                              /* last wave that touched it (apply.c) */
} of_entity;

typedef struct of_worker_batch of_worker_batch;
typedef struct of_worker_item of_worker_item;

/* One event's application of one transition. */
struct of_step_ctx {
    const of_machine *m;               /* the machine */
    const of_transition *t;            /* the matched row (set by of_machine_apply) */
    of_worker_batch *b;                /* batch (for of_step_emit) */
    of_worker_item *it;                /* the causing event */
    of_db_pipeline *wp;                /* write pipeline: a step's statements run before the
                                          wave's row sets */
    of_db_rows *mrows;                 /* the machine's row sets, indexed by of_machine_sql */
    of_db_rows *rows;                  /* the worker's row sets, indexed like its handler's sets */
    of_entity *e;                      /* the entity (its state is the `from`) */
    void *scope;                       /* the worker's scope entity (route.scope_id) */
    void *batch;                       /* the worker's batch state (of_worker_handler) */
    void *out;                         /* the machine's step output (its header's type) */
    int to;                            /* target chosen by the step (-1: the row's) */
    char reason[OF_STEP_REASON_SIZE];  /* status reason, or "" */
    cJSON *detail;                     /* history detail object, created on demand */
    cJSON *input;                      /* execution input when the step starts one */
    int new_version;                   /* version after (set by of_machine_apply) */
    of_applied_list *applied;          /* where applied transitions are listed */
    of_trace trace;                    /* the step's span: trace id, its span id and flags
                                          (drawn by of_machine_apply/of_machine_record) */
    char parent_span[OF_SPAN_ID_SIZE]; /* the span that caused the step, "" for a root */
    const char *tracestate;            /* tracestate carried on (the event's), never NULL */
};

/* The name of a machine statement, "<machine>_<role>", into buf. */
const char *of_machine_stmt(const of_machine *m, of_machine_sql role, char *buf, size_t size);
/* Name of a state or trigger, or "?" outside the machine's enumeration. */
const char *of_machine_state_name(const of_machine *m, int state);
const char *of_machine_trigger_name(const of_machine *m, int trigger);
/* Parses a state name (the status column); returns 0 or OF_EINVAL. */
int of_machine_state_parse(const of_machine *m, const char *name, int *out)
    __attribute__((warn_unused_result));

/* Rows whose (from, trigger) match, or NULL; *n receives how many (they are
 * consecutive in the table). */
const of_transition *of_machine_find(const of_machine *m, int from, int trigger, size_t *n);
/* True when the table has the row (from, trigger, to). */
bool of_machine_allows(const of_machine *m, int from, int trigger, int to);
/* Checks the machine: every state, trigger, step and execution of a row is
 * one the machine names; rows per (from, trigger) consecutive with one step
 * and execution; no row leaves "no state" except creations; every named
 * state is reachable; statements present. Returns 0 or OF_EINVAL with the
 * reason in err. */
int of_machine_validate(const of_machine *m, char *err, size_t errsize)
    __attribute__((warn_unused_result));

/* Applies (s->e->state, trigger), running the row's step as impls[step]
 * says. Returns 0, OF_EILLEGAL (no such transition; nothing appended, see
 * of_machine_record), OF_ESTATE when this worker does not run the step or
 * the step chose a target the table does not allow, or the step's error. On
 * success s->e holds the new state and version, and the transition is
 * appended to *s->applied. */
int of_machine_apply(of_step_ctx *s, const of_step_impl *impls, int trigger)
    __attribute__((warn_unused_result));
/* True when impls runs the step of (from, trigger). */
bool of_machine_runs(const of_machine *m, const of_step_impl *impls, int from, int trigger);
/* Records an event the machine did not accept (or that did not apply) in the
 * entity's latest execution history, with outcome "rejected" or "ignored",
 * and changes nothing else. trigger_name is the history's step. */
int of_machine_record(of_step_ctx *s, const char *outcome, const char *trigger_name,
                      const char *reason) __attribute__((warn_unused_result));
/* For steps: publishes m in the step's transaction (of_worker_emit: an
 * outbox row, sent after commit), with the step's trace context:
 * ce_traceparent naming the step's span and ce_tracestate as received. Takes
 * m over (zeroed) on success. The machine's status event goes through here
 * too. Returns 0 or a negative of_err. */
int of_step_emit(of_step_ctx *s, of_message *m) __attribute__((warn_unused_result));
/* Adds one row (values for every column) to the worker's row set `set`.
 * Returns 0 or a negative of_err. */
int of_step_rows(of_step_ctx *s, size_t set, const char *const *values)
    __attribute__((warn_unused_result));
/* Releases s->detail and s->input. */
void of_step_ctx_free(of_step_ctx *s);

typedef enum of_render_format { OF_RENDER_DOT, OF_RENDER_MERMAID } of_render_format;
/* Writes the machine's diagram, one edge per row, labelled trigger / step. */
void of_machine_render(const of_machine *m, of_render_format format, FILE *out);

#endif
