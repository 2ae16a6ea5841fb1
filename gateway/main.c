/* main.c: orderflow-gateway, the HTTP front door: settings, start-up, probes, graceful shutdown.
 *
 * One libuv loop runs everything: libmicrohttpd (http.h, no threads of its
 * own), the idempotent producer that publishes the accepted events, and the
 * PostgreSQL connection that reads the order view. The routes are api.c's.
 *
 * Shutdown on SIGTERM/SIGINT: /readyz turns 503 and new writes get 503; the
 * requests in progress are answered (a publish waits for its delivery report)
 * for at most the grace period; then the server, the producer (flushed) and
 * the connection close and the process exits 0. */
#include "gateway.h"

#include "orderflow/log.h"

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

void gw_on_delivery(of_producer *p, void *opaque, rd_kafka_resp_err_t err, void *arg);

static const of_config_item items[] = {
    {"database-url", "DATABASE_URL", "database-url", OF_CFG_SECRET,
     "postgresql://orderflow@127.0.0.1:25432/orderflow", "PostgreSQL connection URI (reads)",
     offsetof(gw_settings, database_url), 0, -1},
    {"kafka-bootstrap-servers", "KAFKA_BOOTSTRAP_SERVERS", "kafka-bootstrap-servers", OF_CFG_STRING,
     "127.0.0.1:29092", "Kafka bootstrap servers (host:port,...)",
     offsetof(gw_settings, kafka_bootstrap), 0, -1},
    {"topic-prefix", "ORDERFLOW_TOPIC_PREFIX", "topic-prefix", OF_CFG_STRING, "",
     "prefix added to every topic name (isolated test runs)", offsetof(gw_settings, topic_prefix),
     0, -1},
    {"log-level", "LOG_LEVEL", "log-level", OF_CFG_STRING, "info", "debug, info, warn or error",
     offsetof(gw_settings, log_level), 0, -1},
    {"http-address", "ORDERFLOW_GATEWAY_ADDRESS", "http-address", OF_CFG_STRING, "0.0.0.0",
     "address the API listens on", offsetof(gw_settings, http_address), 0, -1},
    {"http-port", "ORDERFLOW_GATEWAY_PORT", "http-port", OF_CFG_INT, "8090",
     "port of the API (and of /healthz, /readyz, /metrics)", offsetof(gw_settings, http_port), 0,
     65535},
    {"token", "ORDERFLOW_GATEWAY_TOKEN", "token", OF_CFG_SECRET, NULL,
     "bearer token the write routes require (unset: none)", offsetof(gw_settings, token), 0, -1},
    {"max-body", "ORDERFLOW_GATEWAY_MAX_BODY", "max-body", OF_CFG_INT, "65536",
     "bytes of a request body at most (a larger one gets 413)", offsetof(gw_settings, max_body), 1,
     1048576},
    {"max-connections", "ORDERFLOW_GATEWAY_MAX_CONNECTIONS", "max-connections", OF_CFG_INT, "512",
     "concurrent client connections at most", offsetof(gw_settings, max_connections), 1, 65535},
    {"wait-max", "ORDERFLOW_GATEWAY_WAIT_MAX", "wait-max", OF_CFG_MS, "30s",
     "longest GET ?wait= (a longer timeout= is cut to it)", offsetof(gw_settings, wait_max), 0,
     600000},
    {"refuse-above-backlog", "ORDERFLOW_GATEWAY_REFUSE_ABOVE_BACKLOG", "refuse-above-backlog",
     OF_CFG_INT, "20000",
     "unpublished outbox rows (measured every 2 s) above which writes get 503 with Retry-After "
     "(0 turns it off)",
     offsetof(gw_settings, refuse_backlog), 0, 100000000},
    {"grace-period", "ORDERFLOW_GRACE_PERIOD", "grace-period", OF_CFG_MS, "25s",
     "time allowed to answer the requests in progress and exit on SIGTERM",
     offsetof(gw_settings, grace_period), 1000, 3600000},
};
#define N_ITEMS (sizeof items / sizeof items[0])

/* --- probes ------------------------------------------------------------------ */

/* /readyz (of_http_add_probes): why the gateway is not ready, or NULL. */
static const char *readiness(void *arg, char *buf, size_t size, char *note, size_t note_size)
{
    gateway *g = arg;
    (void)buf, (void)size, (void)note, (void)note_size;
    return g->stopping            ? "shutting down"
           : g->producer.fatal    ? "kafka producer failed fatally (restart pending)"
           : !of_db_ready(&g->db) ? "postgres connection \"gateway\" is not ready"
                                  : NULL;
}

/* --- overload ---------------------------------------------------------------- */

/* The pipeline behind the gateway is over its limits when the events it
 * committed are not reaching Kafka: the same measure the workers hold on
 * (backpressure.c). Writes are then refused with 503 and Retry-After. */
static void on_backlog(of_db *db, of_db_pipeline *p, int status, void *arg)
{
    gateway *g = arg;
    const PGresult *r = of_db_pipeline_result(p, 0);
    (void)db;
    g->backlog_in_flight = false;
    if (status == OF_OK && r != NULL && PQntuples(r) == 1) {
        bool was = gw_overloaded(g);
        g->backlog = strtod(PQgetvalue(r, 0, 0), NULL);
        of_metric_set(g->overloaded, NULL, gw_overloaded(g) ? 1 : 0);
        if (gw_overloaded(g) != was)
            of_log_warn("gateway: %.0f unpublished outbox rows: %s", g->backlog,
                        gw_overloaded(g) ? "refusing writes (503)" : "accepting writes again");
    }
    of_db_pipeline_reset(p);
}

static void on_backlog_timer(uv_timer_t *t)
{
    gateway *g = t->data;
    if (g->cfg.refuse_backlog <= 0 || g->backlog_in_flight || !of_db_ready(&g->db))
        return;
    of_db_pipeline_reset(&g->backlog_p);
    if (of_db_pipeline_add_sql(&g->backlog_p,
                               "select count(*) from outbox where published_at is null"
                               " and dead_at is null",
                               0, NULL) == 0 &&
        of_db_submit(&g->db, &g->backlog_p, on_backlog, g) == 0)
        g->backlog_in_flight = true;
}

bool gw_overloaded(const gateway *g)
{
    return g->cfg.refuse_backlog > 0 && g->backlog > (double)g->cfg.refuse_backlog;
}

/* --- shutdown ---------------------------------------------------------------- */

static void on_closed_handle(uv_handle_t *h)
{
    (void)h;
}

static void on_db_closed(of_db *db)
{
    gateway *g = db->loop->data;
    uv_close((uv_handle_t *)&g->sigterm, on_closed_handle);
    uv_close((uv_handle_t *)&g->sigint, on_closed_handle);
    uv_close((uv_handle_t *)&g->shutdown_timer, on_closed_handle);
    uv_close((uv_handle_t *)&g->backlog_timer, on_closed_handle);
}

static void on_producer_closed(of_producer *p)
{
    gateway *g = p->arg;
    of_db_close(&g->db, on_db_closed);
}

static void on_http_closed(of_http *h)
{
    gateway *g = h->loop->data;
    of_producer_close(&g->producer, 5000, on_producer_closed);
}

static void finish(gateway *g)
{
    uv_timer_stop(&g->shutdown_timer);
    if (g->in_progress > 0)
        of_log_warn("gateway: %d request(s) still in progress at the end of the grace period",
                    g->in_progress);
    of_http_close(&g->http, on_http_closed);
}

/* Every 50 ms: done when no request is in progress, or at the grace period. */
static void on_shutdown_timer(uv_timer_t *t)
{
    gateway *g = t->data;
    if (g->in_progress == 0 || uv_now(g->loop) >= g->shutdown_deadline)
        finish(g);
}

static void on_signal(uv_signal_t *s, int signum)
{
    gateway *g = s->data;
    if (g->stopping) {
        of_log_warn("second signal %d; exiting now", signum);
        _exit(EX_TEMPFAIL);
    }
    g->stopping = true;
    of_log_info("signal %d: shutting down (grace period %" PRId64 " ms)", signum,
                g->cfg.grace_period);
    uv_signal_stop(&g->sigterm);
    uv_signal_stop(&g->sigint);
    uv_timer_stop(&g->backlog_timer);
    g->shutdown_deadline = uv_now(g->loop) + (uint64_t)g->cfg.grace_period;
    uv_timer_start(&g->shutdown_timer, on_shutdown_timer, 0, 50);
}

static void on_producer_fatal(of_producer *p)
{
    gateway *g = p->arg;
    g->exit_code = EX_SOFTWARE;
    of_log_error("kafka producer failed fatally; shutting down to be restarted");
    if (!g->stopping)
        raise(SIGTERM);
}

/* --- main -------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    gateway g;
    uv_loop_t loop;
    char errstr[512];
    of_log_level level;
    sigset_t stop_signals;
    static const char *const l_requests[] = {"route", "status"};
    static const char *const l_topic[] = {"topic"};

    memset(&g, 0, sizeof g);
    /* As the workers: a stop requested during start-up waits for the handlers. */
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    of_config_load_or_exit(items, N_ITEMS, &g.cfg, argc, argv, NULL, "orderflow-gateway",
                           "The HTTP front door: POST /orders, /orders/{id}/status, "
                           "/orders/{id}/returns; GET /orders/{id}[/history] (see README.md).");
    of_log_init("gateway");
    if (of_log_level_parse(g.cfg.log_level, &level) == 0)
        of_log_set_level(level);
    if (of_db_conninfo_check(g.cfg.database_url, NULL) != OF_OK) {
        of_log_error("invalid database-url: not a libpq connection string or URI");
        return EX_CONFIG;
    }
    if (uv_loop_init(&loop) != 0)
        return EX_OSERR;
    loop.data = &g;
    g.loop = &loop;
    of_metrics_init(&g.metrics);
    g.requests = of_metrics_counter(&g.metrics, "orderflow_gateway_requests_total",
                                    "API requests answered, by route and status.", l_requests, 2);
    g.published = of_metrics_counter(&g.metrics, "orderflow_gateway_published_total",
                                     "Events the gateway published (acknowledged by Kafka), by "
                                     "topic.",
                                     l_topic, 1);
    rd_kafka_conf_t *conf =
        of_kafka_conf_new(g.cfg.kafka_bootstrap, "gateway", errstr, sizeof errstr);
    g.overloaded = of_metrics_gauge(&g.metrics, "orderflow_gateway_overloaded",
                                    "1 while writes are refused (503): more unpublished outbox "
                                    "rows than refuse-above-backlog.",
                                    NULL, 0);
    if (g.requests == NULL || g.published == NULL || g.overloaded == NULL || conf == NULL) {
        of_log_error("could not start: %s", conf == NULL ? errstr : "out of memory");
        return conf == NULL ? EX_CONFIG : EX_SOFTWARE;
    }
    if (of_producer_init(&g.producer, &loop, conf, gw_on_delivery, &g) != 0) {
        of_log_error("could not create the kafka producer");
        return EX_SOFTWARE;
    }
    g.producer.on_fatal = on_producer_fatal;
    if (of_db_init(&g.db, &loop, g.cfg.database_url, "gateway", NULL, 0, NULL, NULL) != 0 ||
        of_db_start(&g.db) != 0) {
        of_log_error("could not set up the postgres connection");
        return EX_SOFTWARE;
    }
    of_http_init(&g.http, &loop);
    g.http.max_connections = (unsigned int)g.cfg.max_connections;
    g.http.access_log = true;
    if (of_http_add_probes(&g.http, &g.metrics, readiness, &g) != 0 ||
        of_http_set_handler(&g.http, gw_api, &g, (size_t)g.cfg.max_body) != 0) {
        of_log_error("could not set up the http routes");
        return EX_SOFTWARE;
    }
    int rc = of_http_start(&g.http, g.cfg.http_address, (uint16_t)g.cfg.http_port);
    if (rc != 0) {
        of_log_error("could not listen on %s:%" PRId64 " (%d)", g.cfg.http_address, g.cfg.http_port,
                     rc);
        return EX_UNAVAILABLE;
    }
    uv_signal_init(&loop, &g.sigterm);
    uv_signal_init(&loop, &g.sigint);
    g.sigterm.data = g.sigint.data = &g;
    uv_signal_start(&g.sigterm, on_signal, SIGTERM);
    uv_signal_start(&g.sigint, on_signal, SIGINT);
    pthread_sigmask(SIG_UNBLOCK, &stop_signals, NULL);
    uv_timer_init(&loop, &g.shutdown_timer);
    g.shutdown_timer.data = &g;
    of_db_pipeline_init(&g.backlog_p);
    uv_timer_init(&loop, &g.backlog_timer);
    g.backlog_timer.data = &g;
    uv_timer_start(&g.backlog_timer, on_backlog_timer, 0, 2000);
    of_log_info("started: http on %s:%u, topics prefixed \"%s\"", g.http.address, g.http.port,
                g.cfg.topic_prefix ? g.cfg.topic_prefix : "");

    uv_run(&loop, UV_RUN_DEFAULT);
    of_log_info("stopped: %" PRIu64 " requests", g.http.requests);
    int result = g.exit_code;
    if (uv_loop_close(&loop) != 0) {
        of_log_error("handles left open at exit");
        result = EX_SOFTWARE;
    }
    of_db_pipeline_free(&g.backlog_p);
    of_metrics_free(&g.metrics);
    of_config_free(items, N_ITEMS, &g.cfg);
    return result;
}
