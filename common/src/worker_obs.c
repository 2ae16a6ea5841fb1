/* worker_obs.c: the runtime's metrics and its /healthz, /readyz and /metrics endpoint.
 *
 * The runtime's families are updated where the runtime learns the facts (a
 * batch polled, a transaction committed, a retry scheduled or exhausted);
 * counters that other modules keep (relay, connections, consumer) are copied
 * in by a collector when /metrics is rendered. Gauges that need Postgres
 * (outbox backlog, handlers' of_worker_gauge_query) are refreshed every
 * STATS_INTERVAL_MS on the relay connection; consumer lag and the group state
 * come from librdkafka's statistics, which the consumer poll delivers. */
#include "worker_internal.h"

#include "orderflow/log.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STATS_INTERVAL_MS    5000
#define KAFKA_STATS_INTERVAL "5000"
#define MAX_GAUGE_QUERIES    8

static const char outbox_stats_sql[] =
    /* The count from outbox_pending_key_idx; the oldest is the oldest row
     * that is not held (outbox_aged_idx) or the first held one in seq order
     * (outbox_held_idx). */
    "select (select count(*) from outbox where published_at is null and dead_at is null),"
    " coalesce(extract(epoch from now() - least("
    "(select min(created_at) from outbox where not held and published_at is null"
    " and dead_at is null),"
    " (select created_at from outbox where held and published_at is null and dead_at is null"
    " order by seq limit 1))), 0)";

/* A gauge set from a query. */
typedef struct gauge_query {
    of_metric *gauge; /* family without labels */
    const char *sql;  /* query: first column of the first row is the value (static) */
} gauge_query;

struct of_worker_obs {
    of_metric *consumed;     /* orderflow_events_consumed_total{topic,type} */
    of_metric *processed;    /* orderflow_events_processed_total{topic,type,outcome} */
    of_metric *dead;         /* orderflow_events_dead_lettered_total{topic,code} */
    of_metric *transitions;  /* orderflow_transitions_total{machine,from,to} */
    of_metric *batch_size;   /* orderflow_batch_size (events per polled batch) */
    of_metric *txn_seconds;  /* orderflow_transaction_duration_seconds */
    of_metric *step_latency; /* orderflow_step_latency_seconds{type} */
    of_metric *retries;      /* orderflow_retries_total */
    of_metric *exhausted;    /* orderflow_retries_exhausted_total */
    of_metric *published;    /* orderflow_outbox_published_total */
    of_metric *failed;       /* orderflow_outbox_failed_total */
    of_metric *swept;        /* orderflow_outbox_swept_total */
    of_metric *held;         /* orderflow_outbox_held_total */
    of_metric *out_dead;     /* orderflow_outbox_dead_total */
    of_metric *sweep_limit;  /* orderflow_outbox_sweep_limit */
    of_metric *sweep_tmo;    /* orderflow_outbox_sweep_timeouts_total */
    of_metric *backlog;      /* orderflow_outbox_backlog */
    of_metric *oldest;       /* orderflow_outbox_oldest_unpublished_age_seconds */
    of_metric *lag;          /* orderflow_consumer_lag{topic,partition} */
    of_metric *assigned;     /* orderflow_consumer_assigned_partitions */
    of_metric *paused;       /* orderflow_consumer_fetch_paused */
    of_metric *pauses;       /* orderflow_consumer_fetch_pauses_total */
    of_metric *reconnects;   /* orderflow_db_reconnects_total{connection} */
    of_metric *build_info;   /* orderflow_build_info{version,worker} */
    uv_timer_t stats_timer;  /* runs the SQL gauge queries */
    of_db_pipeline stats;    /* the SQL gauge queries */
    bool stats_in_flight;    /* stats is submitted */
    gauge_query queries[MAX_GAUGE_QUERIES]; /* handlers' gauges, after the outbox query */
    size_t n_queries;                       /* used entries */
    int64_t kafka_stats_ms;                 /* statistics.interval.ms in effect (0: off) */
    uint64_t kafka_stats_at; /* uv_now() at the last statistics, 0 before the first */
    char cgrp_state[32];     /* consumer group state in the last statistics */
};

static const char *const l_topic_type[] = {"topic", "type"};
static const char *const l_processed[] = {"topic", "type", "outcome"};
static const char *const l_dead[] = {"topic", "code"};
static const char *const l_transition[] = {"machine", "from", "to"};
static const char *const l_type[] = {"type"};
static const char *const l_lag[] = {"topic", "partition"};
static const char *const l_connection[] = {"connection"};
static const char *const l_build[] = {"version", "worker"};
static const double batch_bounds[] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000};
static const double txn_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                    0.25,  0.5,    1,     2.5,  5,     10};
static const double latency_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                        2.5,   5,    10,    30,   60,  300,  1800};
#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* The event type as a label value: only types the handler decoded (a small
 * known set), so that bad input cannot create series at will. */
static const char *type_label(const of_worker_item *it)
{
    return it->decoded ? it->ev.type : "invalid";
}

/* The outcome of a committed event as a label value: handlers' outcome
 * words are for the log (some name the new status), so anything but
 * "ignored" and "rejected" counts as "applied". */
static const char *outcome_label(const of_worker_item *it)
{
    if (it->outcome != NULL &&
        (strcmp(it->outcome, "ignored") == 0 || strcmp(it->outcome, "rejected") == 0))
        return it->outcome;
    return "applied";
}

void of_obs_polled(of_worker *w)
{
    struct of_worker_obs *o = w->obs;
    of_worker_batch *b = &w->batch;
    of_metric_observe(o->batch_size, NULL, (double)b->n);
    for (size_t i = 0; i < b->n; i++) {
        const of_worker_item *it = &b->items[i];
        of_metric_add(o->consumed, (const char *const[]){it->rec.topic, type_label(it)}, 1);
    }
}

void of_obs_retry(of_worker *w)
{
    of_metric_add(w->obs->retries, NULL, 1);
}

void of_obs_exhausted(of_worker *w)
{
    of_metric_add(w->obs->exhausted, NULL, 1);
}

/* Counts the transitions the committed transaction applied, as
 * of_machine_apply() listed them (a transaction that rolled back lists
 * nothing that counts: the list is cleared before every attempt). */
static void count_transitions(struct of_worker_obs *o, const of_applied_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        const of_machine *m = l->v[i].m;
        const of_transition *t = l->v[i].t;
        const char *from = t->from != OF_STATE_NONE ? of_machine_state_name(m, t->from) : "none";
        of_metric_add(o->transitions,
                      (const char *const[]){m->executions[t->execution], from,
                                            of_machine_state_name(m, t->to)},
                      1);
    }
}

void of_obs_committed(of_worker *w, const of_db_pipeline *wp)
{
    struct of_worker_obs *o = w->obs;
    of_worker_batch *b = &w->batch;
    struct timespec ts;
    int64_t now_ms = 0, at_ms;

    if (clock_gettime(CLOCK_REALTIME, &ts) == 0)
        now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    if (wp != NULL) {
        of_metric_observe(o->txn_seconds, NULL, (double)(w->lp.elapsed_ns + wp->elapsed_ns) / 1e9);
        of_bp_committed(w, (double)(w->lp.elapsed_ns + wp->elapsed_ns) / 1e6);
    }
    for (size_t i = b->lo; i < b->hi; i++) {
        const of_worker_item *it = &b->items[i];
        const char *topic = it->rec.topic;
        switch (it->state) {
        case OF_ITEM_DONE:
            of_metric_add(o->processed,
                          (const char *const[]){topic, type_label(it), outcome_label(it)}, 1);
            if (it->ev.has_time && now_ms > 0 && of_event_time_parse(it->ev.time, &at_ms) == 0)
                of_metric_observe(o->step_latency, (const char *const[]){type_label(it)},
                                  now_ms > at_ms ? (double)(now_ms - at_ms) / 1000.0 : 0.0);
            break;
        case OF_ITEM_DUPLICATE:
            of_metric_add(o->processed, (const char *const[]){topic, type_label(it), "duplicate"},
                          1);
            break;
        case OF_ITEM_DEAD:
            of_metric_add(o->dead, (const char *const[]){topic, of_item_code(it)}, 1);
            break;
        case OF_ITEM_PARKED:
            of_metric_add(o->processed, (const char *const[]){topic, type_label(it), "parked"}, 1);
            break;
        case OF_ITEM_PENDING:
            break;
        }
    }
    count_transitions(o, &b->applied);
}

/* Copies counters other modules keep, at every render. */
static void collect(void *arg, of_metrics *m)
{
    of_worker *w = arg;
    struct of_worker_obs *o = w->obs;
    of_metric_set(o->published, NULL, (double)w->relay.published_total);
    of_metric_set(o->failed, NULL, (double)w->relay.failed_total);
    of_metric_set(o->swept, NULL, (double)w->relay.swept_total);
    of_metric_set(o->held, NULL, (double)w->relay.held_total);
    of_metric_set(o->out_dead, NULL, (double)w->relay.dead_total);
    of_metric_set(o->sweep_limit, NULL, (double)w->relay.sweep_limit);
    of_metric_set(o->sweep_tmo, NULL, (double)w->relay.sweep_timeouts);
    /* Literal names: during shutdown of_db_close() may have released db->name. */
    of_metric_set(o->reconnects, (const char *const[]){"batch"}, (double)w->db.reconnects);
    of_metric_set(o->reconnects, (const char *const[]){"relay"}, (double)w->aux.reconnects);
    of_metric_set(o->assigned, NULL, (double)w->consumer.assigned_partitions);
    of_metric_set(o->paused, NULL, w->consumer.paused ? 1 : 0);
    of_metric_set(o->pauses, NULL, (double)w->consumer.n_pauses);
}

/* librdkafka statistics (every statistics.interval.ms, served by the
 * consumer poll on the loop): the group state for /readyz and the lag of
 * each partition this consumer fetches. */
static int on_kafka_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    /* of_consumer_init() makes the consumer the handle's opaque; its arg is the worker. */
    of_consumer *c = opaque;
    of_worker *w = c->arg;
    struct of_worker_obs *o = w->obs;
    cJSON *root = cJSON_ParseWithLength(json, len);
    const cJSON *state, *topic, *part;

    if (root == NULL)
        return 0; /* librdkafka frees json */
    o->kafka_stats_at = uv_now(w->loop);
    state =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "cgrp"), "state");
    snprintf(o->cgrp_state, sizeof o->cgrp_state, "%s",
             cJSON_IsString(state) ? state->valuestring : "unknown");
    /* Rebuilt from each snapshot, so that revoked partitions disappear. */
    of_metric_clear(o->lag);
    cJSON_ArrayForEach(topic, cJSON_GetObjectItemCaseSensitive(root, "topics"))
    {
        cJSON_ArrayForEach(part, cJSON_GetObjectItemCaseSensitive(topic, "partitions"))
        {
            const cJSON *lag = cJSON_GetObjectItemCaseSensitive(part, "consumer_lag");
            /* -1: the internal "unassigned" partition, or one not fetched here. */
            if (topic->string == NULL || part->string == NULL || strcmp(part->string, "-1") == 0 ||
                !cJSON_IsNumber(lag) || lag->valuedouble < 0)
                continue;
            of_metric_set(o->lag, (const char *const[]){topic->string, part->string},
                          lag->valuedouble);
        }
    }
    cJSON_Delete(root);
    return 0;
}

int of_obs_kafka_conf(of_worker *w, rd_kafka_conf_t *conf, char *errstr, size_t size)
{
    char cur[32];
    size_t n = sizeof cur;
    /* KAFKA_STATISTICS_INTERVAL_MS, when set, was applied by of_kafka_conf_new()
     * and wins; 0 turns statistics (lag gauges, the no-assignment readiness)
     * off. */
    if (getenv("KAFKA_STATISTICS_INTERVAL_MS") == NULL &&
        rd_kafka_conf_set(conf, "statistics.interval.ms", KAFKA_STATS_INTERVAL, errstr, size) !=
            RD_KAFKA_CONF_OK)
        return OF_EINVAL;
    if (rd_kafka_conf_get(conf, "statistics.interval.ms", cur, &n) == RD_KAFKA_CONF_OK)
        w->obs->kafka_stats_ms = strtoll(cur, NULL, 10);
    rd_kafka_conf_set_stats_cb(conf, on_kafka_stats);
    return 0;
}

/* Why the worker should not get traffic now, or NULL when it may. */
static const char *not_ready(of_worker *w, char *buf, size_t size)
{
    struct of_worker_obs *o = w->obs;
    uint64_t now = uv_now(w->loop);
    if (w->producer.fatal)
        return "kafka producer failed fatally (restart pending)";
    if (w->consumer.fatal)
        return "kafka consumer failed fatally (restart pending)";
    if (w->stopping)
        return "shutting down";
    if (!of_db_ready(&w->db))
        return "postgres connection \"batch\" is not ready";
    if (w->busy && now - w->progress_at > (uint64_t)w->cfg.stall_timeout) {
        snprintf(buf, size, "no commit for %" PRIu64 " ms with a batch in progress (stall-timeout)",
                 now - w->progress_at);
        return buf;
    }
    if (w->consumer.assigned_partitions > 0)
        return NULL;
    /* No partition can be normal (more replicas than partitions). Such a
     * consumer is fine while it is polled (statistics only arrive through
     * the poll) and its group is up. */
    if (o->kafka_stats_ms <= 0)
        return "kafka consumer has no partitions assigned";
    if (o->kafka_stats_at == 0) {
        snprintf(buf, size, "kafka consumer has no partitions assigned and no statistics yet");
        return buf;
    }
    if (now - o->kafka_stats_at > 3 * (uint64_t)o->kafka_stats_ms + 1000) {
        snprintf(buf, size,
                 "kafka consumer has no partitions assigned and was not polled for %" PRIu64 " ms",
                 now - o->kafka_stats_at);
        return buf;
    }
    if (strcmp(o->cgrp_state, "up") != 0) {
        snprintf(buf, size, "kafka consumer has no partitions assigned and its group is \"%s\"",
                 o->cgrp_state);
        return buf;
    }
    return NULL;
}

/* /readyz: why the worker is not ready, and what holds it (backpressure is
 * not a fault: said, but still ready). */
static const char *readiness(void *arg, char *buf, size_t size, char *note, size_t note_size)
{
    const char *bp = of_bp_state(arg, note, note_size);
    if (bp == NULL)
        note[0] = '\0';
    return not_ready(arg, buf, size);
}

int of_worker_gauge_query(of_worker *w, const char *name, const char *help, const char *sql)
{
    struct of_worker_obs *o = w->obs;
    of_metric *g;
    if (o == NULL || sql == NULL || o->n_queries == MAX_GAUGE_QUERIES)
        return OF_EINVAL;
    g = of_metrics_gauge(&w->metrics, name, help, NULL, 0);
    if (g == NULL)
        return OF_ENOMEM;
    o->queries[o->n_queries].gauge = g;
    o->queries[o->n_queries].sql = sql;
    o->n_queries++;
    return 0;
}

static void set_from_result(of_metric *g, const PGresult *r, int col)
{
    if (r != NULL && PQntuples(r) > 0 && PQnfields(r) > col && !PQgetisnull(r, 0, col))
        of_metric_set(g, NULL, strtod(PQgetvalue(r, 0, col), NULL));
}

static void on_stats(of_db *db, of_db_pipeline *p, int status, void *arg)
{
    of_worker *w = arg;
    struct of_worker_obs *o = w->obs;
    o->stats_in_flight = false;
    if (status == OF_OK) {
        const PGresult *r = of_db_pipeline_result(p, 0);
        set_from_result(o->backlog, r, 0);
        if (r != NULL && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
            of_bp_backlog(w, strtod(PQgetvalue(r, 0, 0), NULL));
        set_from_result(o->oldest, of_db_pipeline_result(p, 0), 1);
        for (size_t i = 0; i < o->n_queries; i++)
            set_from_result(o->queries[i].gauge, of_db_pipeline_result(p, i + 1), 0);
    } else if (status == OF_ESQL) {
        of_log_warn("could not refresh metrics: %s", p->error);
    }
    of_db_pipeline_reset(p);
}

static void on_stats_timer(uv_timer_t *t)
{
    of_worker *w = t->data;
    struct of_worker_obs *o = w->obs;
    int rc;
    if (w->stopping || o->stats_in_flight || !of_db_ready(&w->aux))
        return;
    of_db_pipeline_reset(&o->stats);
    rc = of_db_pipeline_add_sql(&o->stats, outbox_stats_sql, 0, NULL);
    for (size_t i = 0; rc == 0 && i < o->n_queries; i++)
        rc = of_db_pipeline_add_sql(&o->stats, o->queries[i].sql, 0, NULL);
    if (rc == 0)
        rc = of_db_submit(&w->aux, &o->stats, on_stats, w);
    if (rc != 0) {
        of_db_pipeline_reset(&o->stats);
        return;
    }
    o->stats_in_flight = true;
}

int of_obs_init(of_worker *w)
{
    struct of_worker_obs *o = calloc(1, sizeof *o);
    of_metrics *m = &w->metrics;
    if (o == NULL)
        return OF_ENOMEM;
    w->obs = o;
    of_metrics_init(m);
    of_http_init(&w->http, w->loop);
    of_db_pipeline_init(&o->stats);
    /* A family that cannot be registered (no memory) is NULL, and its
     * updates do nothing: metrics never stop the worker. */
    o->consumed = of_metrics_counter(
        m, "orderflow_events_consumed_total",
        "Events taken from Kafka, by topic and type (\"invalid\" when the worker could not decode "
        "the event).",
        l_topic_type, 2);
    o->processed = of_metrics_counter(
        m, "orderflow_events_processed_total",
        "Events whose transaction committed, by outcome: applied, ignored, rejected or duplicate.",
        l_processed, 3);
    o->dead = of_metrics_counter(m, "orderflow_events_dead_lettered_total",
                                 "Events dead-lettered (committed), by error code.", l_dead, 2);
    o->transitions = of_metrics_counter(m, "orderflow_transitions_total",
                                        "State machine transitions committed, by execution "
                                        "(the machine's execution names) and status.",
                                        l_transition, 3);
    o->batch_size =
        of_metrics_histogram(m, "orderflow_batch_size", "Events per batch taken from Kafka.", NULL,
                             0, batch_bounds, N_OF(batch_bounds));
    o->txn_seconds = of_metrics_histogram(
        m, "orderflow_transaction_duration_seconds",
        "Time Postgres took for a committed batch transaction (load and write pipelines).", NULL, 0,
        txn_bounds, N_OF(txn_bounds));
    o->step_latency = of_metrics_histogram(
        m, "orderflow_step_latency_seconds",
        "Time from an event's ce_time to the commit of its step, by event type.", l_type, 1,
        latency_bounds, N_OF(latency_bounds));
    o->retries =
        of_metrics_counter(m, "orderflow_retries_total",
                           "Batch transactions retried after a transient failure.", NULL, 0);
    o->exhausted = of_metrics_counter(
        m, "orderflow_retries_exhausted_total",
        "Transactions whose transient failures reached retry-limit: the batch was run one event "
        "at a time, or its single event dead-lettered as RETRIES_EXHAUSTED.",
        NULL, 0);
    o->published = of_metrics_counter(m, "orderflow_outbox_published_total",
                                      "Outbox events delivered to Kafka.", NULL, 0);
    o->failed =
        of_metrics_counter(m, "orderflow_outbox_failed_total",
                           "Outbox deliveries that failed (the sweep retries them).", NULL, 0);
    o->swept = of_metrics_counter(m, "orderflow_outbox_swept_total",
                                  "Outbox rows republished by the sweep.", NULL, 0);
    o->held = of_metrics_counter(
        m, "orderflow_outbox_held_total",
        "Outbox rows not sent at commit because an older row of their key was pending (the "
        "sweep sends them in order).",
        NULL, 0);
    o->out_dead = of_metrics_counter(
        m, "orderflow_outbox_dead_total",
        "Outbox rows given up after outbox-max-failures permanent delivery errors "
        "(outbox.dead_at).",
        NULL, 0);
    o->sweep_limit = of_metrics_gauge(
        m, "orderflow_outbox_sweep_limit",
        "Rows this worker's sweep claims at a time (halved after a sweep cancelled by the "
        "statement timeout, doubled back after quick ones).",
        NULL, 0);
    o->sweep_tmo = of_metrics_counter(m, "orderflow_outbox_sweep_timeouts_total",
                                      "Sweeps cancelled by the statement timeout.", NULL, 0);
    o->backlog =
        of_metrics_gauge(m, "orderflow_outbox_backlog",
                         "Unpublished outbox rows (all workers), refreshed every 5 s.", NULL, 0);
    o->oldest =
        of_metrics_gauge(m, "orderflow_outbox_oldest_unpublished_age_seconds",
                         "Age of the oldest unpublished outbox row, refreshed every 5 s.", NULL, 0);
    o->lag = of_metrics_gauge(m, "orderflow_consumer_lag",
                              "Messages behind the end of each partition this consumer fetches "
                              "(librdkafka statistics).",
                              l_lag, 2);
    o->assigned = of_metrics_gauge(m, "orderflow_consumer_assigned_partitions",
                                   "Partitions assigned to this consumer.", NULL, 0);
    o->paused = of_metrics_gauge(m, "orderflow_consumer_fetch_paused",
                                 "1 while fetching is paused because a batch runs long (the group "
                                 "is served meanwhile).",
                                 NULL, 0);
    o->pauses = of_metrics_counter(m, "orderflow_consumer_fetch_pauses_total",
                                   "Times fetching was paused because a batch ran long.", NULL, 0);
    o->reconnects =
        of_metrics_counter(m, "orderflow_db_reconnects_total",
                           "Postgres connections lost or failed, by connection.", l_connection, 1);
    o->build_info = of_metrics_gauge(m, "orderflow_build_info", "Version of the worker (always 1).",
                                     l_build, 2);
    of_metric_set(o->build_info, (const char *const[]){ORDERFLOW_VERSION, w->h->name}, 1);
    if (of_metrics_add_collector(m, collect, w) != 0 ||
        of_http_add_probes(&w->http, &w->metrics, readiness, w) != 0)
        return OF_ENOMEM;
    return 0;
}

void of_obs_start(of_worker *w)
{
    struct of_worker_obs *o = w->obs;
    const char *addr = w->cfg.http_address ? w->cfg.http_address : "0.0.0.0";
    bool v6 = strchr(addr, ':') != NULL;
    int rc;

    uv_timer_init(w->loop, &o->stats_timer);
    o->stats_timer.data = w;
    uv_timer_start(&o->stats_timer, on_stats_timer, 1000, STATS_INTERVAL_MS);
    if (w->cfg.http_port == 0) {
        of_log_info("http endpoint disabled (http-port 0)");
        return;
    }
    rc = of_http_start(&w->http, addr, (uint16_t)w->cfg.http_port);
    if (rc != 0) {
        /* The worker still does its work; probes fail, which is visible. */
        of_log_error("could not start the http endpoint on \"%s\" port %" PRId64 ": %s", addr,
                     w->cfg.http_port,
                     rc == OF_EINVAL   ? "not an IP address"
                     : rc == OF_ESTART ? "could not listen (see the previous message)"
                                       : uv_strerror(rc));
        return;
    }
    of_log_info("http endpoint on http://%s%s%s:%u (/healthz, /readyz, /metrics)", v6 ? "[" : "",
                addr, v6 ? "]" : "", (unsigned)w->http.port);
}

static void on_http_closed(of_http *h)
{
    of_worker *w = h->loop->data;
    w->closing--;
}

void of_obs_close(of_worker *w, void (*close_handle)(of_worker *, uv_handle_t *))
{
    if (w->obs == NULL)
        return;
    close_handle(w, (uv_handle_t *)&w->obs->stats_timer);
    if (!w->http.closing) {
        w->closing++;
        of_http_close(&w->http, on_http_closed);
    }
}

void of_obs_free(of_worker *w)
{
    if (w->obs != NULL) {
        of_db_pipeline_free(&w->obs->stats);
        free(w->obs);
        w->obs = NULL;
    }
    of_metrics_free(&w->metrics);
}
