/* console.h: what the console's files share (main.c: settings, start-up, shutdown, probes;
 * api.c: the JSON API and the embedded assets; run.c: orderctl as a child process;
 * figures.c: the workers' metrics, sampled). */
#ifndef ORDERFLOW_CONSOLE_H
#define ORDERFLOW_CONSOLE_H

#include "orderflow/config.h"
#include "orderflow/db.h"
#include "orderflow/http.h"
#include "orderflow/metrics.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* Settings (see main.c's table). */
typedef struct con_settings {
    char *database_url;   /* reads (executions, history); orderctl gets it too */
    char *log_level;      /* debug, info, warn, error */
    char *http_address;   /* address to listen on */
    int64_t http_port;    /* port */
    char *token;          /* bearer token the write routes require; unset: read-only */
    char *orderctl;       /* the orderctl program the console runs for dead letters and parking */
    char *metrics_urls;   /* the workers' /metrics URLs, comma-separated */
    int64_t grace_period; /* ms allowed for a graceful shutdown */
} con_settings;

/* One sample of the figures (figures.c). */
typedef struct con_sample {
    double t;             /* seconds since the epoch */
    double events_per_s;  /* events processed per second, every worker */
    double lag;           /* messages behind, summed over partitions */
    double oldest_outbox; /* age of the oldest pending outbox row, seconds */
    double dead_per_min;  /* events dead-lettered per minute */
    double parked;        /* parked keys */
    int sources_ok;       /* /metrics answers this round */
} con_sample;

#define CON_SAMPLES 120 /* 10 minutes at one sample per 5 s */

typedef struct console {
    uv_loop_t *loop;            /* the process's loop */
    con_settings cfg;           /* settings */
    of_http http;               /* the API, the assets, /healthz, /readyz, /metrics */
    of_db db;                   /* reads */
    of_metrics metrics;         /* /metrics */
    of_metric *requests;        /* orderflow_console_requests_total{route,status} */
    uv_signal_t sigterm;        /* shutdown */
    uv_signal_t sigint;         /* shutdown */
    uv_timer_t shutdown_timer;  /* waits for requests in progress */
    uint64_t shutdown_deadline; /* uv_now() at the end of the grace period */
    bool stopping;              /* shutdown began */
    int in_progress;            /* API requests not answered yet */
    int exit_code;              /* process exit code */
    /* figures.c */
    uv_timer_t figures_timer;              /* samples every 5 s */
    char **urls;                           /* parsed metrics_urls */
    size_t n_urls;                         /* entries */
    struct con_scrape *scrapes;            /* one per URL, in flight or idle */
    con_sample samples[CON_SAMPLES];       /* ring */
    size_t n_samples;                      /* samples taken (the ring holds the last CON_SAMPLES) */
    double prev_events, prev_dead, prev_t; /* counters of the previous round */
    bool have_prev;                        /* prev_* are set */
} console;

/* api.c: the handler of every request no route takes. */
void con_api(void *arg, of_http_request *req);

/* run.c: runs orderctl with argv (NULL-terminated, argv[0] is ignored), its
 * standard output answered as the response (application/json) when it exits
 * 0; otherwise a JSON error with its standard error and exit code (66 is
 * 404). The request is answered in every case. */
void con_run_orderctl(console *c, of_http_request *req, const char *const *argv);

/* figures.c */
int con_figures_start(console *c) __attribute__((warn_unused_result));
void con_figures_stop(console *c);
/* The samples as JSON: {"sources": [...], "samples": [...]}. */
char *con_figures_json(const console *c);

#endif
