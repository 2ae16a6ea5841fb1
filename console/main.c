/* main.c: orderflow-console, the operators' console in the browser: settings, start-up, probes,
 * graceful shutdown.
 *
 * One libuv loop runs everything: libmicrohttpd (http.h) serving the embedded
 * page and its JSON API (api.c), one PostgreSQL connection for the reads of
 * executions and their history, orderctl run as a child process for dead
 * letters and parked keys (run.c: one source of truth for those commands and
 * what they record), and the sampler of the workers' metrics (figures.c).
 *
 * Read-only unless a token is set: then the write routes (redrive, release)
 * require it as a bearer token. The token is never rendered or logged.
 *
 * Shutdown on SIGTERM/SIGINT: /readyz turns 503; requests in progress are
 * answered for at most the grace period; then everything closes, exit 0. */
#include "console.h"

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

static const of_config_item items[] = {
    {"database-url", "DATABASE_URL", "database-url", OF_CFG_SECRET,
     "postgresql://orderflow@127.0.0.1:25432/orderflow",
     "PostgreSQL connection URI (reads; orderctl, which the console runs, gets it too)",
     offsetof(con_settings, database_url), 0, -1},
    {"log-level", "LOG_LEVEL", "log-level", OF_CFG_STRING, "info", "debug, info, warn or error",
     offsetof(con_settings, log_level), 0, -1},
    {"http-address", "ORDERFLOW_CONSOLE_ADDRESS", "http-address", OF_CFG_STRING, "0.0.0.0",
     "address the console listens on", offsetof(con_settings, http_address), 0, -1},
    {"http-port", "ORDERFLOW_CONSOLE_PORT", "http-port", OF_CFG_INT, "8095",
     "port of the console (and of /healthz, /readyz, /metrics)", offsetof(con_settings, http_port),
     0, 65535},
    {"token", "ORDERFLOW_CONSOLE_TOKEN", "token", OF_CFG_SECRET, NULL,
     "bearer token the write actions (redrive, release) require; unset: the console is read-only",
     offsetof(con_settings, token), 0, -1},
    {"orderctl", "ORDERFLOW_ORDERCTL", "orderctl", OF_CFG_STRING, NULL,
     "the orderctl program run for dead letters and parked keys (default: orderctl beside this "
     "program, else on PATH)",
     offsetof(con_settings, orderctl), 0, -1},
    {"metrics-urls", "ORDERFLOW_CONSOLE_METRICS_URLS", "metrics-urls", OF_CFG_STRING, "",
     "the workers' /metrics URLs, comma-separated (http://host:port/metrics), sampled every 5 s "
     "for the live figures",
     offsetof(con_settings, metrics_urls), 0, -1},
    {"grace-period", "ORDERFLOW_GRACE_PERIOD", "grace-period", OF_CFG_MS, "25s",
     "time allowed to answer the requests in progress and exit on SIGTERM",
     offsetof(con_settings, grace_period), 1000, 3600000},
};
#define N_ITEMS (sizeof items / sizeof items[0])

/* --- probes ------------------------------------------------------------------ */

/* /readyz (of_http_add_probes): why the console is not ready, or NULL. */
static const char *readiness(void *arg, char *buf, size_t size, char *note, size_t note_size)
{
    console *c = arg;
    (void)buf, (void)size, (void)note, (void)note_size;
    return c->stopping            ? "shutting down"
           : !of_db_ready(&c->db) ? "postgres connection \"console\" is not ready"
                                  : NULL;
}

/* --- shutdown ---------------------------------------------------------------- */

static void on_closed_handle(uv_handle_t *h)
{
    (void)h;
}

static void on_db_closed(of_db *db)
{
    console *c = db->loop->data;
    uv_close((uv_handle_t *)&c->sigterm, on_closed_handle);
    uv_close((uv_handle_t *)&c->sigint, on_closed_handle);
    uv_close((uv_handle_t *)&c->shutdown_timer, on_closed_handle);
}

static void on_http_closed(of_http *h)
{
    console *c = h->loop->data;
    of_db_close(&c->db, on_db_closed);
}

static void on_shutdown_timer(uv_timer_t *t)
{
    console *c = t->data;
    if (c->in_progress > 0 && uv_now(c->loop) < c->shutdown_deadline)
        return;
    uv_timer_stop(&c->shutdown_timer);
    if (c->in_progress > 0)
        of_log_warn("console: %d request(s) still in progress at the end of the grace period",
                    c->in_progress);
    of_http_close(&c->http, on_http_closed);
}

static void on_signal(uv_signal_t *s, int signum)
{
    console *c = s->data;
    if (c->stopping) {
        of_log_warn("second signal %d; exiting now", signum);
        _exit(EX_TEMPFAIL);
    }
    c->stopping = true;
    of_log_info("signal %d: shutting down (grace period %" PRId64 " ms)", signum,
                c->cfg.grace_period);
    uv_signal_stop(&c->sigterm);
    uv_signal_stop(&c->sigint);
    con_figures_stop(c);
    c->shutdown_deadline = uv_now(c->loop) + (uint64_t)c->cfg.grace_period;
    uv_timer_start(&c->shutdown_timer, on_shutdown_timer, 0, 50);
}

/* orderctl beside this program when there is one, else "orderctl" (PATH). */
static char *default_orderctl(void)
{
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash != NULL) {
            char path[4200];
            /* The build tree keeps it in tools/orderctl/, an install beside us. */
            snprintf(path, sizeof path, "%.*s/orderctl", (int)(slash - self), self);
            if (access(path, X_OK) == 0)
                return strdup(path);
            snprintf(path, sizeof path, "%.*s/../tools/orderctl/orderctl", (int)(slash - self),
                     self);
            if (access(path, X_OK) == 0)
                return strdup(path);
        }
    }
    return strdup("orderctl");
}

/* --- main -------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    console c;
    uv_loop_t loop;
    of_log_level level;
    sigset_t stop_signals;
    static const char *const l_requests[] = {"route", "status"};

    memset(&c, 0, sizeof c);
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    of_config_load_or_exit(items, N_ITEMS, &c.cfg, argc, argv, NULL, "orderflow-console",
                           "The operators' console in the browser: executions, their diagrams "
                           "and history, dead letters, parked keys, live figures (see "
                           "README.md).");
    of_log_init("console");
    if (of_log_level_parse(c.cfg.log_level, &level) == 0)
        of_log_set_level(level);
    if (of_db_conninfo_check(c.cfg.database_url, NULL) != OF_OK) {
        of_log_error("invalid database-url: not a libpq connection string or URI");
        return EX_CONFIG;
    }
    if (c.cfg.orderctl == NULL || c.cfg.orderctl[0] == '\0') {
        free(c.cfg.orderctl);
        c.cfg.orderctl = default_orderctl();
    }
    /* orderctl inherits the environment: the database it reads is ours. */
    if (c.cfg.orderctl == NULL || setenv("DATABASE_URL", c.cfg.database_url, 1) != 0 ||
        setenv("ORDERCTL_OPERATOR", "orderflow-console", 0) != 0)
        return EX_SOFTWARE;
    if (uv_loop_init(&loop) != 0)
        return EX_OSERR;
    loop.data = &c;
    c.loop = &loop;
    of_metrics_init(&c.metrics);
    c.requests =
        of_metrics_counter(&c.metrics, "orderflow_console_requests_total",
                           "Console API requests answered, by route and status.", l_requests, 2);
    if (c.requests == NULL) {
        of_log_error("could not start: out of memory");
        return EX_SOFTWARE;
    }
    if (of_db_init(&c.db, &loop, c.cfg.database_url, "console", NULL, 0, NULL, NULL) != 0 ||
        of_db_start(&c.db) != 0) {
        of_log_error("could not set up the postgres connection");
        return EX_SOFTWARE;
    }
    of_http_init(&c.http, &loop);
    c.http.access_log = true;
    if (of_http_add_probes(&c.http, &c.metrics, readiness, &c) != 0 ||
        of_http_set_handler(&c.http, con_api, &c, 16384) != 0) {
        of_log_error("could not set up the http routes");
        return EX_SOFTWARE;
    }
    int rc = of_http_start(&c.http, c.cfg.http_address, (uint16_t)c.cfg.http_port);
    if (rc != 0) {
        of_log_error("could not listen on %s:%" PRId64 " (%d)", c.cfg.http_address, c.cfg.http_port,
                     rc);
        return EX_UNAVAILABLE;
    }
    if (con_figures_start(&c) != 0) {
        of_log_error("invalid metrics-urls: expected http://host:port/path, comma-separated");
        return EX_CONFIG;
    }
    uv_signal_init(&loop, &c.sigterm);
    uv_signal_init(&loop, &c.sigint);
    c.sigterm.data = c.sigint.data = &c;
    uv_signal_start(&c.sigterm, on_signal, SIGTERM);
    uv_signal_start(&c.sigint, on_signal, SIGINT);
    pthread_sigmask(SIG_UNBLOCK, &stop_signals, NULL);
    uv_timer_init(&loop, &c.shutdown_timer);
    c.shutdown_timer.data = &c;
    of_log_info("started: http on %s:%u, %s, %zu metrics source(s), orderctl \"%s\"",
                c.http.address, c.http.port,
                c.cfg.token != NULL && c.cfg.token[0] != '\0' ? "writes need the token"
                                                              : "read-only",
                c.n_urls, c.cfg.orderctl);

    uv_run(&loop, UV_RUN_DEFAULT);
    of_log_info("stopped: %" PRIu64 " requests", c.http.requests);
    int result = c.exit_code;
    if (uv_loop_close(&loop) != 0) {
        of_log_error("handles left open at exit");
        result = EX_SOFTWARE;
    }
    for (size_t i = 0; i < c.n_urls; i++)
        free(c.urls[i]);
    free(c.urls);
    free(c.scrapes);
    of_metrics_free(&c.metrics);
    of_config_free(items, N_ITEMS, &c.cfg);
    return result;
}
