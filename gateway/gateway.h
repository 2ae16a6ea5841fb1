/* gateway.h: what the gateway's files share (main.c: settings, start-up, shutdown, probes;
 * api.c: the API routes). */
#ifndef ORDERFLOW_GATEWAY_H
#define ORDERFLOW_GATEWAY_H

#include "orderflow/config.h"
#include "orderflow/db.h"
#include "orderflow/http.h"
#include "orderflow/kafka.h"
#include "orderflow/metrics.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

/* Settings (see main.c's table). */
typedef struct gw_settings {
    char *database_url;      /* read side: the order view */
    char *kafka_bootstrap;   /* write side: the topics */
    char *topic_prefix;      /* prefix of every topic (tests) */
    char *log_level;         /* debug, info, warn, error */
    char *http_address;      /* address to listen on */
    int64_t http_port;       /* port */
    char *token;             /* bearer token the write routes require, or NULL */
    int64_t max_body;        /* bytes of a request body at most */
    int64_t max_connections; /* concurrent connections */
    int64_t wait_max;        /* ms a GET ?wait= may take at most */
    int64_t grace_period;    /* ms allowed for a graceful shutdown */
    int64_t refuse_backlog;  /* unpublished outbox rows above which writes get 503 (0: off) */
} gw_settings;

typedef struct gateway {
    uv_loop_t *loop;            /* the process's loop */
    gw_settings cfg;            /* settings */
    of_http http;               /* API, /healthz, /readyz, /metrics */
    of_producer producer;       /* publishes the accepted events */
    of_db db;                   /* reads the order view */
    of_metrics metrics;         /* /metrics */
    of_metric *requests;        /* orderflow_gateway_requests_total{route,status} */
    of_metric *published;       /* orderflow_gateway_published_total{topic} */
    of_metric *overloaded;      /* orderflow_gateway_overloaded */
    uv_timer_t backlog_timer;   /* measures the outbox backlog every 2 s */
    of_db_pipeline backlog_p;   /* its query */
    bool backlog_in_flight;     /* the query runs */
    double backlog;             /* unpublished outbox rows, last measured */
    uv_signal_t sigterm;        /* shutdown */
    uv_signal_t sigint;         /* shutdown */
    uv_timer_t shutdown_timer;  /* waits for requests in progress */
    uint64_t shutdown_deadline; /* uv_now() at the end of the grace period */
    bool stopping;              /* shutdown began */
    int in_progress;            /* API requests not answered yet */
    int exit_code;              /* process exit code */
} gateway;

/* main.c: true while writes are refused (refuse-above-backlog). */
bool gw_overloaded(const gateway *g);

/* api.c: the handler of every request no route takes. */
void gw_api(void *arg, of_http_request *req);

#endif
