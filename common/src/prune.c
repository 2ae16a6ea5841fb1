/* prune.c: the runtime's retention targets and the pruner that runs targets batch by batch on the
 * loop. */
#include "orderflow/prune.h"

#include "orderflow/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The inbox of one consumer ($1), by processed_at (inbox_consumer_processed_at_idx). */
#define INBOX_DUE "consumer = $1 and processed_at < " OF_PRUNE_BEFORE("$2")
const of_prune_target of_prune_inbox = {
    "inbox",
    OF_PRUNE_DELETE_SQL("inbox", INBOX_DUE, "processed_at", "$3"),
    OF_PRUNE_COUNT_SQL("inbox", INBOX_DUE),
    "select extract(epoch from now() - min(processed_at)) from inbox where consumer = $1",
    /* Every consumer, one index probe each (a loose scan of the primary key). */
    "with recursive c (consumer) as (select min(consumer) from inbox union all"
    " select (select min(consumer) from inbox where consumer > c.consumer) from c"
    " where c.consumer is not null) select consumer from c where consumer is not null",
};

/* Published rows, whoever wrote them (outbox_published_at_idx); a row
 * without published_at never matches. */
#define OUTBOX_DUE "published_at < " OF_PRUNE_BEFORE("$1")
const of_prune_target of_prune_outbox = {
    "outbox",
    OF_PRUNE_DELETE_SQL("outbox", OUTBOX_DUE, "published_at", "$2"),
    OF_PRUNE_COUNT_SQL("outbox", OUTBOX_DUE),
    "select extract(epoch from now() - min(published_at)) from outbox"
    " where published_at is not null",
    NULL,
};

/* A worker's ($1) dead letters that were redriven, by the last redrive
 * (dead_letters_redriven_idx); one never redriven never matches. Their
 * redrives rows go with them (on delete cascade). */
#define DEAD_LETTERS_DUE "worker = $1 and redriven_at < " OF_PRUNE_BEFORE("$2")
const of_prune_target of_prune_dead_letters = {
    "dead_letters",
    OF_PRUNE_DELETE_SQL("dead_letters", DEAD_LETTERS_DUE, "redriven_at", "$3"),
    OF_PRUNE_COUNT_SQL("dead_letters", DEAD_LETTERS_DUE),
    "select extract(epoch from now() - min(redriven_at)) from dead_letters"
    " where worker = $1 and redriven_at is not null",
    "select distinct worker from dead_letters where redriven_at is not null",
};

/* Finished executions by when they stopped (executions_stopped_at_idx); a
 * running one has no stopped_at. Their history goes with them (on delete
 * cascade). */
#define EXECUTIONS_DUE "stopped_at < " OF_PRUNE_BEFORE("$1")
const of_prune_target of_prune_executions = {
    "executions",
    OF_PRUNE_DELETE_SQL("executions", EXECUTIONS_DUE, "stopped_at", "$2"),
    OF_PRUNE_COUNT_SQL("executions", EXECUTIONS_DUE),
    "select extract(epoch from now() - min(stopped_at)) from executions"
    " where stopped_at is not null",
    NULL,
};

int of_prune_settings_check(const of_prune_settings *s, char *err, size_t size)
{
    if (s->history != 0 && s->history < OF_PRUNE_HOUR_MS) {
        snprintf(err, size,
                 "invalid value for \"retention-history\": %" PRId64
                 " ms is neither 0 (keep forever) nor at least 1h",
                 s->history);
        return OF_EINVAL;
    }
    if (s->inbox < OF_PRUNE_DAY_MS)
        of_log_warn("retention-inbox is %" PRId64 " ms, less than a day: an event delivered again "
                    "after its inbox row is pruned takes effect twice; keep it longer than the "
                    "topics' retention plus the offsets' retention (docs/operations.md#retention)",
                    s->inbox);
    return 0;
}

int of_prune_params(const of_prune_target *t, const char *scope, const char *retention,
                    const char *batch, const char **values)
{
    int n = 0;
    if (t->scopes_sql != NULL)
        values[n++] = scope;
    if (retention != NULL)
        values[n++] = retention;
    if (batch != NULL)
        values[n++] = batch;
    return n;
}

/* The pruner. */

static void on_timer(uv_timer_t *t);

int of_pruner_init(of_pruner *p, uv_loop_t *loop, of_db *db, of_metrics *m, const char *scope,
                   uint64_t interval_ms, int64_t batch)
{
    static const char *const l_table[] = {"table"};
    memset(p, 0, sizeof *p);
    p->loop = loop;
    p->db = db;
    p->interval_ms = interval_ms;
    p->batch_size = batch;
    snprintf(p->batch, sizeof p->batch, "%" PRId64, batch);
    if (scope == NULL || strlen(scope) >= sizeof p->scope || batch < 1)
        return OF_EINVAL;
    snprintf(p->scope, sizeof p->scope, "%s", scope);
    of_db_pipeline_init(&p->p);
    if (uv_timer_init(loop, &p->timer) != 0)
        return OF_ESTATE;
    p->timer.data = p;
    /* A family that cannot be registered is NULL and ignores updates. */
    p->pruned = of_metrics_counter(m, "orderflow_pruned_rows_total",
                                   "Rows this process deleted because their retention had passed, "
                                   "by table.",
                                   l_table, 1);
    p->oldest = of_metrics_gauge(m, "orderflow_prune_oldest_age_seconds",
                                 "Age of the oldest row kept that this process prunes, by table, "
                                 "refreshed after every prune cycle (0 when there is none).",
                                 l_table, 1);
    return 0;
}

int of_pruner_add(of_pruner *p, const of_prune_target *t, int64_t retention_ms)
{
    of_prune_job *j;
    if (retention_ms <= 0)
        return 0;
    if (p->n_jobs == OF_PRUNER_MAX_JOBS)
        return OF_EINVAL;
    for (size_t i = 0; i < p->n_jobs; i++)
        if (strcmp(p->jobs[i].t->table, t->table) == 0)
            return OF_EINVAL;
    j = &p->jobs[p->n_jobs++];
    memset(j, 0, sizeof *j);
    j->t = t;
    j->retention_ms = retention_ms;
    snprintf(j->retention, sizeof j->retention, "%" PRId64, retention_ms);
    j->pruned = of_metric_with(p->pruned, (const char *const[]){t->table});
    j->oldest = of_metric_with(p->oldest, (const char *const[]){t->table});
    of_series_add(j->pruned, 0); /* the series exists from the start */
    return 0;
}

void of_pruner_start(of_pruner *p)
{
    if (p->interval_ms == 0 || p->n_jobs == 0) {
        of_log_info("pruning is off (%s)", p->interval_ms == 0 ? "prune-interval 0" : "no table");
        return;
    }
    uv_timer_start(&p->timer, on_timer, p->interval_ms, 0);
}

void of_pruner_stop(of_pruner *p)
{
    p->stopping = true;
    if (uv_is_active((uv_handle_t *)&p->timer))
        uv_timer_stop(&p->timer);
}

void of_pruner_free(of_pruner *p)
{
    of_db_pipeline_free(&p->p);
}

/* The cycle. */

static void end_cycle(of_pruner *p, const char *why)
{
    uint64_t rows = 0;
    char detail[256] = "";
    size_t used = 0;

    for (size_t i = 0; i < p->n_jobs; i++) {
        const of_prune_job *j = &p->jobs[i];
        rows += j->cycle_rows;
        if (j->cycle_rows > 0 && used < sizeof detail)
            used += (size_t)snprintf(detail + used, sizeof detail - used, "%s%s %" PRIu64,
                                     used > 0 ? ", " : "", j->t->table, j->cycle_rows);
    }
    if (rows > 0)
        of_log_info("pruned %" PRIu64 " row(s) in %" PRIu64 " batch(es), %" PRIu64 " ms: %s%s%s",
                    rows, p->cycle_batches, uv_now(p->loop) - p->cycle_started, detail,
                    why != NULL ? "; stopped early: " : "", why != NULL ? why : "");
    else
        of_log_debug("prune cycle: nothing due%s%s", why != NULL ? "; stopped early: " : "",
                     why != NULL ? why : "");
    p->in_cycle = false;
    if (!p->stopping)
        uv_timer_start(&p->timer, on_timer, p->interval_ms, 0);
}

static void on_result(of_db *db, of_db_pipeline *pl, int status, void *arg)
{
    of_pruner *p = arg;
    of_prune_job *j = &p->jobs[p->cur];
    PGresult *r = of_db_pipeline_result(pl, 0);

    p->in_flight = false;
    if (p->stopping || status == OF_ECANCELED) {
        of_db_pipeline_reset(pl);
        return;
    }
    if (status == OF_ECONN) {
        of_db_pipeline_reset(pl);
        end_cycle(p, "the connection was lost");
        return;
    }
    if (status != OF_OK) {
        /* Typically a lock or statement timeout, or a missing grant: the
         * next table goes on, and the next cycle tries this one again. */
        of_log_warn("could not prune \"%s\": %s", j->t->table,
                    pl->error[0] != '\0' ? pl->error : of_strerror(status));
        p->counting = false;
        p->cur++;
    } else if (!p->counting) {
        int64_t n = r != NULL ? strtoll(PQcmdTuples(r), NULL, 10) : 0;
        j->cycle_rows += (uint64_t)n;
        of_series_add(j->pruned, (double)n);
        /* A full batch may have left more: the same table again. */
        p->counting = n < p->batch_size;
    } else {
        bool none = r == NULL || PQntuples(r) == 0 || PQgetisnull(r, 0, 0);
        of_series_set(j->oldest, none ? 0.0 : strtod(PQgetvalue(r, 0, 0), NULL));
        p->counting = false;
        p->cur++;
    }
    of_db_pipeline_reset(pl);
    /* Back to the loop before the next statement. */
    uv_timer_start(&p->timer, on_timer, 0, 0);
}

/* Sends the next statement of the cycle: a batch of the current table, or its gauge query. */
static void step(of_pruner *p)
{
    const of_prune_job *j;
    const char *values[3];
    int n, rc;

    if (p->cur == p->n_jobs) {
        end_cycle(p, NULL);
        return;
    }
    if (!of_db_ready(p->db)) {
        end_cycle(p, "postgres is not ready");
        return;
    }
    j = &p->jobs[p->cur];
    if (p->counting) {
        n = of_prune_params(j->t, p->scope, NULL, NULL, values);
        rc = of_db_pipeline_add_sql(&p->p, j->t->oldest_sql, n, n > 0 ? values : NULL);
    } else {
        n = of_prune_params(j->t, p->scope, j->retention, p->batch, values);
        rc = of_db_pipeline_add_sql(&p->p, j->t->delete_sql, n, values);
        p->cycle_batches++;
    }
    if (rc == 0)
        rc = of_db_submit(p->db, &p->p, on_result, p);
    if (rc != 0) {
        of_db_pipeline_reset(&p->p);
        end_cycle(p, of_strerror(rc));
        return;
    }
    p->in_flight = true;
}

static void on_timer(uv_timer_t *t)
{
    of_pruner *p = t->data;
    if (p->stopping || p->in_flight)
        return;
    if (!p->in_cycle) {
        p->in_cycle = true;
        p->cur = 0;
        p->counting = false;
        p->cycle_batches = 0;
        p->cycle_started = uv_now(p->loop);
        for (size_t i = 0; i < p->n_jobs; i++)
            p->jobs[i].cycle_rows = 0;
    }
    step(p);
}
