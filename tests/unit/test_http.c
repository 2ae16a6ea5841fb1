/* test_http.c: the HTTP server answers real socket clients on a real libuv loop and closes without
 * leaking handles. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <uv.h>

#include "orderflow/http.h"
#include "orderflow/log.h"

#define MAX_REQUESTS 8

/* A client thread: plain blocking sockets, one connection per request
 * (unless a request holds several), each read until the server closes. The
 * loop thread learns it is done through an uv_async_t. Only the main thread
 * asserts; the client records what it got. */
typedef struct client {
    uint16_t port;                      /* server port */
    const char *requests[MAX_REQUESTS]; /* raw requests, sent as they are */
    size_t n;                           /* number of requests */
    char *responses[MAX_REQUESTS];      /* raw responses (heap), NULL on error */
    bool hold_idle;                     /* instead: connect, send nothing, wait for the close */
    int idle_recv;                      /* recv() result on the idle connection */
    int idle_errno;                     /* errno when idle_recv < 0 */
    uv_async_t *done;                   /* signalled when the client has finished */
} client;

static int connect_to(uint16_t port)
{
    struct sockaddr_in sa;
    struct timeval tv = {5, 0};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* A server that stops answering fails the test instead of hanging it. */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static char *exchange(uint16_t port, const char *request)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *mem;
    char chunk[4096];
    ssize_t n;
    size_t sent = 0, total = strlen(request);
    int fd = connect_to(port);
    if (fd < 0)
        return NULL;
    while (sent < total) {
        n = send(fd, request + sent, total - sent, MSG_NOSIGNAL);
        if (n <= 0) {
            close(fd);
            return NULL;
        }
        sent += (size_t)n;
    }
    mem = open_memstream(&buf, &len);
    if (mem == NULL) {
        close(fd);
        return NULL;
    }
    while ((n = recv(fd, chunk, sizeof chunk, 0)) > 0)
        fwrite(chunk, 1, (size_t)n, mem);
    fclose(mem);
    close(fd);
    if (n < 0) { /* timed out: the server did not finish the response */
        free(buf);
        return NULL;
    }
    return buf;
}

static void *client_main(void *arg)
{
    client *c = arg;
    if (c->hold_idle) {
        char b;
        int fd = connect_to(c->port);
        /* Let the loop close the server while this connection is open. */
        uv_async_send(c->done);
        c->idle_recv = fd < 0 ? -2 : (int)recv(fd, &b, 1, 0);
        c->idle_errno = errno;
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    for (size_t i = 0; i < c->n; i++)
        c->responses[i] = exchange(c->port, c->requests[i]);
    uv_async_send(c->done);
    return NULL;
}

/* The server under test and the loop plumbing around it. */
typedef struct fixture {
    uv_loop_t loop;  /* the loop */
    of_http http;    /* server */
    uv_async_t done; /* client finished */
    client c;        /* client state */
    int closed;      /* close callbacks seen */
} fixture;

static void on_http_closed(of_http *h)
{
    fixture *f = h->loop->data;
    f->closed++;
}

static void on_done(uv_async_t *a)
{
    fixture *f = a->data;
    of_http_close(&f->http, on_http_closed);
    uv_close((uv_handle_t *)&f->done, NULL);
}

static void route_ok(void *arg, of_http_response *res)
{
    fputs("ok\n", res->body);
}

static void route_down(void *arg, of_http_response *res)
{
    res->status = 503;
    fprintf(res->body, "not ready: %s\n", (const char *)arg);
}

static void route_json(void *arg, of_http_response *res)
{
    res->content_type = "application/json";
    fputs("{\"a\":1}", res->body);
}

static void fixture_start(fixture *f)
{
    memset(f, 0, sizeof *f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->loop.data = f;
    of_http_init(&f->http, &f->loop);
    assert_int_equal(of_http_add_route(&f->http, "/healthz", route_ok, NULL), 0);
    assert_int_equal(of_http_add_route(&f->http, "/readyz", route_down, "postgres away"), 0);
    assert_int_equal(of_http_add_route(&f->http, "/json", route_json, NULL), 0);
    /* Port 0: the kernel picks a free one; h->port tells which. */
    assert_int_equal(of_http_start(&f->http, "127.0.0.1", 0), 0);
    assert_true(f->http.port > 0);
    assert_int_equal(uv_async_init(&f->loop, &f->done, on_done), 0);
    f->done.data = f;
    f->c.port = f->http.port;
    f->c.done = &f->done;
}

/* Runs the loop while the client works, then checks that everything closed. */
static void fixture_run(fixture *f)
{
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, client_main, &f->c), 0);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(f->closed, 1);
    assert_null(f->http.daemon);
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

static void fixture_free(fixture *f)
{
    for (size_t i = 0; i < f->c.n; i++)
        free(f->c.responses[i]);
}

/* The body after the blank line, or NULL. */
static const char *body_of(const char *response)
{
    const char *p = strstr(response, "\r\n\r\n");
    return p ? p + 4 : NULL;
}

static void test_routes_statuses_and_headers(void **state)
{
    fixture f;
    fixture_start(&f);
    f.c.requests[f.c.n++] = "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    f.c.requests[f.c.n++] = "GET /nope HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    f.c.requests[f.c.n++] = "POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
                            "Connection: close\r\n\r\nabc";
    f.c.requests[f.c.n++] = "HEAD /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    f.c.requests[f.c.n++] = "GET /readyz HTTP/1.0\r\n\r\n";
    f.c.requests[f.c.n++] = "GET /json?pretty=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    fixture_run(&f);

    for (size_t i = 0; i < f.c.n; i++)
        assert_non_null(f.c.responses[i]);
    const char *ok = f.c.responses[0];
    assert_true(strncmp(ok, "HTTP/1.1 200 OK\r\n", 17) == 0);
    assert_non_null(strstr(ok, "Content-Type: text/plain; charset=utf-8\r\n"));
    assert_non_null(strstr(ok, "Content-Length: 3\r\n"));
    assert_non_null(strstr(ok, "Cache-Control: no-store\r\n"));
    assert_string_equal(body_of(ok), "ok\n");

    assert_true(strncmp(f.c.responses[1], "HTTP/1.1 404 Not Found\r\n", 24) == 0);
    assert_string_equal(body_of(f.c.responses[1]), "not found\n");

    assert_true(strncmp(f.c.responses[2], "HTTP/1.1 405 Method Not Allowed\r\n", 33) == 0);
    assert_non_null(strstr(f.c.responses[2], "Allow: GET, HEAD\r\n"));

    /* HEAD: the GET's headers, no body. */
    assert_true(strncmp(f.c.responses[3], "HTTP/1.1 200 OK\r\n", 17) == 0);
    assert_non_null(strstr(f.c.responses[3], "Content-Length: 3\r\n"));
    assert_string_equal(body_of(f.c.responses[3]), "");

    /* An HTTP/1.0 client gets the server's version in the status line. */
    assert_true(strncmp(f.c.responses[4], "HTTP/1.1 503 Service Unavailable\r\n", 34) == 0);
    assert_string_equal(body_of(f.c.responses[4]), "not ready: postgres away\n");

    /* The query string is not part of the path. */
    assert_true(strncmp(f.c.responses[5], "HTTP/1.1 200 OK\r\n", 17) == 0);
    assert_non_null(strstr(f.c.responses[5], "Content-Type: application/json\r\n"));
    assert_string_equal(body_of(f.c.responses[5]), "{\"a\":1}");
    fixture_free(&f);
}

static void test_keep_alive_and_pipelining(void **state)
{
    fixture f;
    fixture_start(&f);
    /* Two requests on one connection, the second closing it. */
    f.c.requests[f.c.n++] = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
                            "GET /json HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    fixture_run(&f);
    const char *r = f.c.responses[0];
    assert_non_null(r);
    const char *second = strstr(r + 1, "HTTP/1.1 200 OK\r\n");
    assert_true(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0);
    assert_non_null(second);
    assert_non_null(strstr(r, "\r\n\r\nok\n"));
    assert_string_equal(body_of(second), "{\"a\":1}");
    fixture_free(&f);
}

static void test_close_drops_idle_connection(void **state)
{
    fixture f;
    fixture_start(&f);
    f.c.hold_idle = true;
    fixture_run(&f);
    /* The server closed the connection (EOF or reset), not the 5 s timeout. */
    assert_true(f.c.idle_recv == 0 || (f.c.idle_recv == -1 && f.c.idle_errno == ECONNRESET));
}

static void test_port_in_use_and_bad_input(void **state)
{
    uv_loop_t loop;
    of_http a, b, c;
    int closed = 0;
    assert_int_equal(uv_loop_init(&loop), 0);
    loop.data = &closed;
    of_http_init(&a, &loop);
    of_http_init(&b, &loop);
    of_http_init(&c, &loop);
    assert_int_equal(of_http_start(&a, "127.0.0.1", 0), 0);
    assert_int_equal(of_http_start(&a, "127.0.0.1", 0), OF_ESTATE);
    /* A second server on the same port fails rather than sharing it. */
    assert_int_equal(of_http_start(&b, "127.0.0.1", a.port), OF_ESTART);
    assert_null(b.daemon);
    assert_int_equal(of_http_start(&c, "localhost", 0), OF_EINVAL);
    /* An IPv6 literal is accepted as an address (binding may still fail
     * where the host has IPv6 off). */
    int rc6 = of_http_start(&c, "::1", 0);
    assert_true(rc6 == 0 || rc6 == OF_ESTART);

    assert_int_equal(of_http_add_route(&a, "healthz", route_ok, NULL), OF_EINVAL);
    assert_int_equal(of_http_add_route(&a, "/x", NULL, NULL), OF_EINVAL);
    char long_path[OF_HTTP_PATH_MAX + 1];
    memset(long_path, 'a', sizeof long_path - 1);
    long_path[0] = '/';
    long_path[sizeof long_path - 1] = '\0';
    assert_int_equal(of_http_add_route(&a, long_path, route_ok, NULL), OF_EINVAL);
    for (int i = 0; i < OF_HTTP_MAX_ROUTES; i++)
        assert_int_equal(of_http_add_route(&a, "/r", route_ok, NULL), 0);
    assert_int_equal(of_http_add_route(&a, "/r", route_ok, NULL), OF_EINVAL);

    of_http_close(&a, NULL);
    of_http_close(&a, NULL); /* twice: nothing more */
    of_http_close(&b, NULL); /* never started */
    of_http_close(&c, NULL);
    assert_int_equal(of_http_start(&b, "127.0.0.1", 0), OF_ESTATE); /* closed */
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_null(a.daemon);
    assert_null(c.daemon);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* --- the API handler ------------------------------------------------------ */

/* Answers later: after a 50 ms timer, as a handler waiting for Kafka would. */
typedef struct late {
    uv_timer_t t;
    of_http_request *req;
} late;

static void on_late_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_late(uv_timer_t *t)
{
    late *l = t->data;
    static const char *const hdrs[] = {"Location", "/orders/x", NULL};
    assert_int_equal(of_http_answer(l->req, 202, NULL, "{\"late\":true}", 13, hdrs), 0);
    uv_close((uv_handle_t *)t, on_late_closed);
}

/* /echo: method, path, a header, a query parameter and the body, at once.
 * /late: 202 after a timer. Anything else: 404 as JSON. */
static void api(void *arg, of_http_request *req)
{
    fixture *f = arg;
    const char *path = of_http_req_path(req);
    if (strcmp(path, "/echo") == 0) {
        char out[512];
        size_t len = 0;
        const char *body = of_http_req_body(req, &len);
        const char *h = of_http_req_header(req, "x-test");
        const char *q = of_http_req_query(req, "q");
        int n =
            snprintf(out, sizeof out, "%s %s h=%s q=%s len=%zu body=%s", of_http_req_method(req),
                     path, h ? h : "-", q ? q : "-", len, body ? body : "-");
        assert_int_equal(of_http_answer(req, 200, "text/plain", out, (size_t)n, NULL), 0);
    } else if (strcmp(path, "/late") == 0) {
        late *l = calloc(1, sizeof *l);
        assert_non_null(l);
        l->req = req;
        l->t.data = l;
        uv_timer_init(&f->loop, &l->t);
        uv_timer_start(&l->t, on_late, 50, 0);
    } else {
        assert_int_equal(of_http_answer(req, 404, NULL, "{\"error\":\"NOT_FOUND\"}", 21, NULL), 0);
    }
}

static void test_api_handler(void **state)
{
    fixture f;
    memset(&f, 0, sizeof f);
    assert_int_equal(uv_loop_init(&f.loop), 0);
    f.loop.data = &f;
    of_http_init(&f.http, &f.loop);
    assert_int_equal(of_http_add_route(&f.http, "/healthz", route_ok, NULL), 0);
    assert_int_equal(of_http_set_handler(&f.http, api, &f, 16), 0);
    assert_int_equal(of_http_start(&f.http, "127.0.0.1", 0), 0);
    assert_int_equal(of_http_set_handler(&f.http, api, &f, 16), OF_EINVAL); /* started */
    assert_int_equal(uv_async_init(&f.loop, &f.done, on_done), 0);
    f.done.data = &f;
    f.c.port = f.http.port;
    f.c.done = &f.done;
    f.c.requests[f.c.n++] = "POST /echo?q=a%20b HTTP/1.1\r\nHost: t\r\nX-Test: yes\r\n"
                            "Content-Length: 5\r\nConnection: close\r\n\r\nhello";
    f.c.requests[f.c.n++] = "GET /late HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    f.c.requests[f.c.n++] = "PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 17\r\n"
                            "Connection: close\r\n\r\n12345678901234567";
    f.c.requests[f.c.n++] = "DELETE /nope HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    f.c.requests[f.c.n++] = "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    /* Two on one connection: the late answer keeps the order. */
    f.c.requests[f.c.n++] = "GET /late HTTP/1.1\r\nHost: t\r\n\r\n"
                            "GET /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    fixture_run(&f);
    for (size_t i = 0; i < f.c.n; i++)
        assert_non_null(f.c.responses[i]);
    assert_true(strncmp(f.c.responses[0], "HTTP/1.1 200 OK\r\n", strlen("HTTP/1.1 200 OK\r\n")) ==
                0);
    assert_string_equal(body_of(f.c.responses[0]), "POST /echo h=yes q=a b len=5 body=hello");
    assert_true(strncmp(f.c.responses[1], "HTTP/1.1 202 Accepted\r\n",
                        strlen("HTTP/1.1 202 Accepted\r\n")) == 0);
    assert_non_null(strstr(f.c.responses[1], "Location: /orders/x\r\n"));
    assert_non_null(strstr(f.c.responses[1], "Content-Type: application/json\r\n"));
    assert_string_equal(body_of(f.c.responses[1]), "{\"late\":true}");
    /* A body over the limit (16): 413, the handler is not called. */
    assert_true(strncmp(f.c.responses[2], "HTTP/1.1 413 ", strlen("HTTP/1.1 413 ")) == 0);
    assert_non_null(strstr(f.c.responses[2], "BODY_TOO_LARGE"));
    assert_true(strncmp(f.c.responses[3], "HTTP/1.1 404 Not Found\r\n",
                        strlen("HTTP/1.1 404 Not Found\r\n")) == 0);
    /* Routes still come first. */
    assert_string_equal(body_of(f.c.responses[4]), "ok\n");
    const char *second = strstr(f.c.responses[5] + 1, "HTTP/1.1 200 OK\r\n");
    assert_true(strncmp(f.c.responses[5], "HTTP/1.1 202 Accepted\r\n",
                        strlen("HTTP/1.1 202 Accepted\r\n")) == 0);
    assert_non_null(second);
    assert_string_equal(body_of(second), "GET /echo h=- q=- len=0 body=-");
    assert_int_equal(f.http.requests, 7);
    fixture_free(&f);
}

static int quiet(void **state)
{
    /* libmicrohttpd's bind failure is logged; keep it out of the output. */
    of_log_set_level(OF_LOG_ERROR);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routes_statuses_and_headers),
        cmocka_unit_test(test_keep_alive_and_pipelining),
        cmocka_unit_test(test_close_drops_idle_connection),
        cmocka_unit_test(test_port_in_use_and_bad_input),
        cmocka_unit_test(test_api_handler),
    };
    return cmocka_run_group_tests(tests, quiet, NULL);
}
