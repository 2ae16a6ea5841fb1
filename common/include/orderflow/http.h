/* http.h: a small HTTP server on the libuv loop: health checks and metrics, and an API.
 *
 * libmicrohttpd parses HTTP. It runs without threads of its own, in external
 * polling mode with epoll (MHD_USE_EPOLL): its epoll descriptor is watched by
 * a uv_poll_t and MHD_run() is called when it becomes readable; a uv_timer_t
 * armed from MHD_get_timeout() after every run lets MHD finish buffered work
 * and close idle connections. Requests are answered in the loop by route
 * callbacks, so a route must not block.
 *
 * Routes match the path exactly (the query string is not part of it). GET and
 * HEAD are served (HEAD without the body); other methods get 405, unknown
 * paths 404. A route fills an of_http_response: the status (200 unless it
 * says otherwise), the content type, and the body written to a memory stream.
 *
 * An API handler (of_http_set_handler, http_api.c) takes every request no
 * route matches, any method, with its body read first (up to a limit; a
 * longer one is answered 413). It answers with of_http_answer(), at once or
 * later from the loop: until then the connection is suspended, so a handler
 * may wait for a Kafka delivery or a database query. With access_log set,
 * every API request is logged when answered (method, path, status, bytes,
 * milliseconds).
 *
 * Ownership: the caller owns the of_http struct (it must stay in place until
 * close_cb) and each route's arg; paths are copied. The body stream belongs
 * to the server, which hands the buffer to libmicrohttpd to send and free. */
#ifndef ORDERFLOW_HTTP_H
#define ORDERFLOW_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "orderflow/error.h"

#define OF_HTTP_MAX_ROUTES 8  /* routes per server */
#define OF_HTTP_PATH_MAX   64 /* bytes of a route's path, NUL included */

/* Errors are OF_EINVAL (bad argument: address, path, too many routes),
 * OF_ESTART (libmicrohttpd could not start: port in use, no permission),
 * OF_ESTATE (already started, closing) from error.h, or libuv's negative UV_E*
 * codes from the handles. */

/* What a route answers. */
typedef struct of_http_response {
    int status;               /* HTTP status; 200 unless the route sets another */
    const char *content_type; /* static string; "text/plain; charset=utf-8" unless set */
    FILE *body;               /* the body: write to it (memory stream owned by the server) */
} of_http_response;

/* Answers one request for the route's path. */
typedef void (*of_http_route_fn)(void *arg, of_http_response *res);

/* One registered path. */
typedef struct of_http_route {
    char path[OF_HTTP_PATH_MAX]; /* exact path, e.g. "/healthz" */
    of_http_route_fn fn;         /* callback */
    void *arg;                   /* callback argument (caller's) */
} of_http_route;

struct MHD_Daemon;
struct of_metrics;
typedef struct of_http of_http;
typedef struct of_http_request of_http_request;

/* Whether the process is ready (of_http_add_probes): NULL when it is, else
 * why not (may be written to buf). May put a line for /readyz to add either
 * way into note (e.g. "holding: backpressure"). */
typedef const char *(*of_http_ready_fn)(void *arg, char *buf, size_t size, char *note,
                                        size_t note_size);

/* Takes one API request; answers it now or later with of_http_answer(). */
typedef void (*of_http_handler_fn)(void *arg, of_http_request *req);

struct of_http {
    uv_loop_t *loop;                          /* loop the server runs on */
    struct MHD_Daemon *daemon;                /* libmicrohttpd daemon, or NULL when not started */
    uv_poll_t poll;                           /* watcher on the daemon's epoll descriptor */
    uv_timer_t timer;                         /* calls MHD_run() when MHD_get_timeout() says so */
    of_http_route routes[OF_HTTP_MAX_ROUTES]; /* registered routes */
    size_t n_routes;                          /* used entries of routes */
    char address[64];                         /* bound address as text */
    uint16_t port;                            /* bound port (the real one when 0 was asked) */
    bool closing;                             /* of_http_close() was called */
    int pending_closes;                       /* handles still closing */
    void (*close_cb)(of_http *h);             /* called once everything is released */
    uint64_t requests;                        /* requests answered, any status (metrics) */
    /* Set before of_http_start(): */
    unsigned int max_connections; /* concurrent connections (0: 64) */
    unsigned int idle_timeout_s;  /* idle connections closed after this (0: 10 s) */
    bool access_log;              /* log every API request when it is answered */
    /* The API handler (of_http_set_handler) and its requests: */
    of_http_handler_fn handler; /* or NULL */
    void *handler_arg;          /* its argument */
    size_t body_limit;          /* bytes of a request body at most */
    of_http_request *pending;   /* API requests not answered yet (a list) */
    uv_timer_t resume_timer;    /* runs the daemon after a late answer */
    /* The probes (of_http_add_probes): */
    struct of_metrics *probe_metrics; /* rendered on /metrics */
    of_http_ready_fn probe_ready;     /* asked by /readyz */
    void *probe_arg;                  /* its argument */
};

/* Prepares h on loop; nothing is bound yet. */
void of_http_init(of_http *h, uv_loop_t *loop);
/* Registers fn for path (copied; must start with '/'). Before or after start.
 * Returns 0 or OF_EINVAL. */
int of_http_add_route(of_http *h, const char *path, of_http_route_fn fn, void *arg)
    __attribute__((warn_unused_result));
/* Adds the probes every orderflow process serves: /healthz (200 "ok": the
 * loop answers), /readyz (200 "ready", or 503 "not ready: <why>" when ready
 * says so; its note on a line of its own) and /metrics (m in the Prometheus
 * text format). Returns 0 or OF_EINVAL (too many routes). */
int of_http_add_probes(of_http *h, struct of_metrics *m, of_http_ready_fn ready, void *arg)
    __attribute__((warn_unused_result));
/* Sends every request no route matches to fn (see above), bodies of at most
 * body_limit bytes. Before start. Returns 0 or OF_EINVAL. */
int of_http_set_handler(of_http *h, of_http_handler_fn fn, void *arg, size_t body_limit)
    __attribute__((warn_unused_result));

/* The request's method, path (without the query), a header (name in any
 * case), a query parameter (decoded), and its body (NUL-terminated; NULL
 * with len 0 when there is none). Valid until the request is answered. */
const char *of_http_req_method(const of_http_request *req);
const char *of_http_req_path(const of_http_request *req);
const char *of_http_req_header(const of_http_request *req, const char *name);
const char *of_http_req_query(const of_http_request *req, const char *name);
const char *of_http_req_body(const of_http_request *req, size_t *len);
/* Data of the handler's own for the request (NULL until set). */
void of_http_req_set_data(of_http_request *req, void *data);
void *of_http_req_data(const of_http_request *req);

/* Answers req: status, content type (NULL: application/json), body[0..len)
 * (copied), extra headers as name, value pairs ending with NULL (may be
 * NULL). req must not be used afterwards. Returns 0, or OF_ENOMEM (the
 * request is then answered 500 all the same). */
int of_http_answer(of_http_request *req, int status, const char *content_type, const char *body,
                   size_t len, const char *const *headers);

/* Binds address (IPv4 or IPv6 literal) and port (0: any free port, see
 * h->port) and starts serving on the loop. Returns 0 or a negative code
 * (OF_HTTP_* or UV_E*); started or not, the server is released with
 * of_http_close(). */
int of_http_start(of_http *h, const char *address, uint16_t port)
    __attribute__((warn_unused_result));
/* Stops serving: the handles are closed, then the daemon is stopped (open
 * connections are dropped) and close_cb (may be NULL) runs; at once when the
 * server was never started. Calling it again does nothing. */
void of_http_close(of_http *h, void (*close_cb)(of_http *h));

#endif
