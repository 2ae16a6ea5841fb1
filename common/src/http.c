/* http.c: libmicrohttpd driven by the libuv loop (epoll descriptor + timer), with exact-path
 * routes; the API handler's requests are http_api.c's. */
#include "http_internal.h"

#include "orderflow/log.h"
#include "orderflow/metrics.h"

#include <microhttpd.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_CONTENT_TYPE "text/plain; charset=utf-8"
#define CONNECTION_LIMIT     64 /* concurrent connections; probes and scrapes need few */
#define CONNECTION_TIMEOUT_S 10 /* idle connections are closed after this */

/* Marks a route's request whose headers were seen. */
int of_http_route_started;

void of_http_init(of_http *h, uv_loop_t *loop)
{
    memset(h, 0, sizeof *h);
    h->loop = loop;
}

int of_http_add_route(of_http *h, const char *path, of_http_route_fn fn, void *arg)
{
    if (path == NULL || path[0] != '/' || strlen(path) >= OF_HTTP_PATH_MAX || fn == NULL ||
        h->n_routes == OF_HTTP_MAX_ROUTES)
        return OF_EINVAL;
    of_http_route *r = &h->routes[h->n_routes];
    snprintf(r->path, sizeof r->path, "%s", path);
    r->fn = fn;
    r->arg = arg;
    h->n_routes++;
    return 0;
}

static const of_http_route *find_route(const of_http *h, const char *path)
{
    for (size_t i = 0; path != NULL && i < h->n_routes; i++)
        if (strcmp(h->routes[i].path, path) == 0)
            return &h->routes[i];
    return NULL;
}

/* libmicrohttpd's own messages (bind failures, protocol errors) go to the
 * process log; they end with a newline, which the log does not want. */
__attribute__((format(printf, 2, 0))) static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    size_t len;
    vsnprintf(msg, sizeof msg, fmt, ap);
    len = strlen(msg);
    while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == '\r'))
        msg[--len] = '\0';
    of_log_warn("http: %s", msg);
}

/* Queues a fixed body that needs no allocation (the last resort). */
static enum MHD_Result queue_static(struct MHD_Connection *conn, unsigned int status,
                                    const char *text)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ret;
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, DEFAULT_CONTENT_TYPE);
    ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* Called by MHD_run() when the request headers are in, then for each piece
 * of body, then once the request is complete. GET and HEAD are answered on
 * that last call, which keeps the connection open for the next request
 * (answering earlier makes MHD close it). Other methods get their 405 on the
 * first call; MHD then discards the body and closes the connection. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    of_http *h = cls;
    of_http_response res = {MHD_HTTP_OK, DEFAULT_CONTENT_TYPE, NULL};
    const of_http_route *route = find_route(h, url);
    if (route == NULL && h->handler != NULL)
        return of_http_api_request(h, conn, url, method, upload_data, upload_data_size, con_cls);
    bool allowed =
        strcmp(method, MHD_HTTP_METHOD_GET) == 0 || strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
    struct MHD_Response *r = NULL;
    char *buf = NULL;
    size_t len = 0;
    enum MHD_Result ret;

    if (allowed && *con_cls == NULL) {
        *con_cls = &of_http_route_started;
        return MHD_YES;
    }
    if (allowed && *upload_data_size != 0) {
        *upload_data_size = 0; /* a GET with a body: the body is ignored */
        return MHD_YES;
    }
    h->requests++;
    res.body = open_memstream(&buf, &len);
    if (res.body == NULL)
        return queue_static(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    if (!allowed) {
        res.status = MHD_HTTP_METHOD_NOT_ALLOWED;
        fputs("method not allowed\n", res.body);
    } else if (route == NULL) {
        res.status = MHD_HTTP_NOT_FOUND;
        fputs("not found\n", res.body);
    } else {
        route->fn(route->arg, &res);
    }
    /* fclose() makes buf the final, NUL-terminated body of len bytes. */
    if (fclose(res.body) != 0 || buf == NULL) {
        free(buf);
        return queue_static(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    }
    if (res.status < 100 || res.status > 599)
        res.status = MHD_HTTP_INTERNAL_SERVER_ERROR;
    r = MHD_create_response_from_buffer(len, buf, MHD_RESPMEM_MUST_FREE);
    if (r == NULL) {
        free(buf);
        return queue_static(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            res.content_type ? res.content_type : DEFAULT_CONTENT_TYPE);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (!allowed)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    ret = MHD_queue_response(conn, (unsigned int)res.status, r);
    MHD_destroy_response(r);
    return ret;
}

/* After every MHD_run(): when MHD has a deadline (buffered data, idle
 * connection timeouts) run it again then, else only on readiness. */
static void on_timer(uv_timer_t *t);

static void rearm(of_http *h)
{
    MHD_UNSIGNED_LONG_LONG ms = 0;
    if (h->closing || h->daemon == NULL)
        return;
    if (MHD_get_timeout(h->daemon, &ms) == MHD_YES)
        uv_timer_start(&h->timer, on_timer, (uint64_t)ms, 0);
    else
        uv_timer_stop(&h->timer);
}

static void run_daemon(of_http *h)
{
    if (h->closing || h->daemon == NULL)
        return;
    MHD_run(h->daemon);
    rearm(h);
}

static void on_timer(uv_timer_t *t)
{
    run_daemon(t->data);
}

void of_http_on_resume(uv_timer_t *t)
{
    run_daemon(t->data);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    of_http *h = p->data;
    if (status < 0)
        of_log_warn("http: could not poll: %s", uv_strerror(status));
    run_daemon(h);
}

int of_http_start(of_http *h, const char *address, uint16_t port)
{
    struct sockaddr_storage sa;
    const union MHD_DaemonInfo *info;
    unsigned int flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
    int rc;

    if (h->daemon != NULL || h->closing)
        return OF_ESTATE;
    memset(&sa, 0, sizeof sa);
    if (address == NULL)
        return OF_EINVAL;
    if (uv_ip4_addr(address, port, (struct sockaddr_in *)&sa) != 0) {
        if (uv_ip6_addr(address, port, (struct sockaddr_in6 *)&sa) != 0)
            return OF_EINVAL;
        flags |= MHD_USE_IPv6;
    }
    /* No MHD_USE_INTERNAL_POLLING_THREAD: MHD only works inside MHD_run(),
     * called from the loop. SO_REUSEADDR is MHD's default (a restarted
     * worker binds at once); SO_REUSEPORT is not set, so a second process
     * on the same port fails instead of sharing it. */
    /* The logger comes first, so that MHD reports option errors through it. */
    if (h->handler != NULL)
        flags |= MHD_ALLOW_SUSPEND_RESUME;
    h->daemon = MHD_start_daemon(
        flags, port, NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_CONNECTION_LIMIT,
        h->max_connections > 0 ? h->max_connections : (unsigned int)CONNECTION_LIMIT,
        MHD_OPTION_CONNECTION_TIMEOUT,
        h->idle_timeout_s > 0 ? h->idle_timeout_s : (unsigned int)CONNECTION_TIMEOUT_S,
        MHD_OPTION_NOTIFY_COMPLETED, of_http_api_completed, h, MHD_OPTION_END);
    if (h->daemon == NULL)
        return OF_ESTART;
    info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    if (info == NULL) {
        rc = OF_ESTART;
        goto fail;
    }
    rc = uv_poll_init(h->loop, &h->poll, info->epoll_fd);
    if (rc != 0)
        goto fail;
    h->poll.data = h;
    /* uv_timer_init() cannot fail once the loop exists. */
    uv_timer_init(h->loop, &h->timer);
    h->timer.data = h;
    uv_timer_init(h->loop, &h->resume_timer);
    h->resume_timer.data = h;
    info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info != NULL ? info->port : port;
    snprintf(h->address, sizeof h->address, "%s", address);
    rc = uv_poll_start(&h->poll, UV_READABLE, on_poll);
    if (rc != 0) {
        /* Both handles exist now: of_http_close() releases them and the daemon. */
        return rc;
    }
    rearm(h);
    return 0;
fail:
    MHD_stop_daemon(h->daemon);
    h->daemon = NULL;
    return rc;
}

static void finish_close(of_http *h)
{
    /* The poll handle no longer watches the epoll descriptor, so the
     * daemon may close it (with the listening socket and connections). */
    if (h->daemon != NULL) {
        MHD_stop_daemon(h->daemon);
        h->daemon = NULL;
    }
    if (h->close_cb != NULL)
        h->close_cb(h);
}

static void on_handle_closed(uv_handle_t *handle)
{
    of_http *h = handle->data;
    if (--h->pending_closes == 0)
        finish_close(h);
}

void of_http_close(of_http *h, void (*close_cb)(of_http *h))
{
    if (h->closing)
        return;
    h->closing = true;
    h->close_cb = close_cb;
    /* The handles exist exactly when the daemon does (see of_http_start). */
    if (h->daemon != NULL) {
        of_http_api_close(h);
        h->pending_closes = 3;
        uv_close((uv_handle_t *)&h->timer, on_handle_closed);
        uv_close((uv_handle_t *)&h->resume_timer, on_handle_closed);
        uv_close((uv_handle_t *)&h->poll, on_handle_closed);
        return;
    }
    finish_close(h);
}

/* Probes. */

static void probe_healthz(void *arg, of_http_response *res)
{
    (void)arg;
    /* Answering at all proves the loop runs. */
    fputs("ok\n", res->body);
}

static void probe_readyz(void *arg, of_http_response *res)
{
    of_http *h = arg;
    char buf[320], note[320];
    note[0] = '\0';
    const char *why = h->probe_ready != NULL
                          ? h->probe_ready(h->probe_arg, buf, sizeof buf, note, sizeof note)
                          : NULL;
    if (why != NULL) {
        res->status = 503;
        fprintf(res->body, "not ready: %s\n", why);
    } else {
        fputs("ready\n", res->body);
    }
    if (note[0] != '\0')
        fprintf(res->body, "%s\n", note);
}

static void probe_metrics(void *arg, of_http_response *res)
{
    of_http *h = arg;
    res->content_type = OF_METRICS_CONTENT_TYPE;
    if (h->probe_metrics == NULL || of_metrics_render(h->probe_metrics, res->body) != 0)
        res->status = 500;
}

int of_http_add_probes(of_http *h, struct of_metrics *m, of_http_ready_fn ready, void *arg)
{
    h->probe_metrics = m;
    h->probe_ready = ready;
    h->probe_arg = arg;
    if (of_http_add_route(h, "/healthz", probe_healthz, h) != 0 ||
        of_http_add_route(h, "/readyz", probe_readyz, h) != 0 ||
        of_http_add_route(h, "/metrics", probe_metrics, h) != 0)
        return OF_EINVAL;
    return OF_OK;
}
