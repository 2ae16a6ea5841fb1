/* http_api.c: the API handler's requests: bodies read up to a limit, answers given now or later
 * (the connection suspended meanwhile), the access log.
 *
 * A request lives until both sides are done with it: libmicrohttpd (its
 * NOTIFY_COMPLETED callback) and the handler (of_http_answer). So a handler
 * that answers after the client left, or after of_http_close() answered for
 * it, touches only memory that is still its own. */
#include "http_internal.h"

#include "orderflow/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef enum req_state {
    REQ_READING,   /* headers in, body arriving */
    REQ_HANDLING,  /* the handler runs (an answer now is queued at once) */
    REQ_SUSPENDED, /* waiting for a late answer, the connection suspended */
    REQ_ANSWERED,  /* answered late: queued when MHD calls again after the resume */
    REQ_DONE,      /* queued (or abandoned) */
} req_state;

struct of_http_request {
    of_http *h;                    /* its server */
    struct MHD_Connection *conn;   /* NULL once MHD is done with it */
    of_http_request *prev, *next;  /* h->pending while unanswered */
    req_state state;               /* see above */
    int refs;                      /* MHD and the handler (see the file comment) */
    bool handler_ref;              /* the handler still holds its reference */
    char method[16];               /* as received (longer ones are cut) */
    char *path;                    /* without the query */
    char *body;                    /* NUL-terminated, or NULL */
    size_t len, cap;               /* body bytes, allocated */
    bool too_large;                /* the body passed the limit */
    struct MHD_Response *response; /* the answer, until queued */
    unsigned int status;           /* its status */
    size_t response_len;           /* its body's length (access log) */
    struct timespec started;       /* when the headers were in */
    void *data;                    /* the handler's */
};

static void unref(of_http_request *req)
{
    if (--req->refs > 0)
        return;
    if (req->response != NULL)
        MHD_destroy_response(req->response);
    free(req->path);
    free(req->body);
    free(req);
}

static void unlink_pending(of_http_request *req)
{
    of_http *h = req->h;
    if (req->prev != NULL)
        req->prev->next = req->next;
    else if (h->pending == req)
        h->pending = req->next;
    if (req->next != NULL)
        req->next->prev = req->prev;
    req->prev = req->next = NULL;
}

const char *of_http_req_method(const of_http_request *req)
{
    return req->method;
}

const char *of_http_req_path(const of_http_request *req)
{
    return req->path;
}

const char *of_http_req_header(const of_http_request *req, const char *name)
{
    return req->conn != NULL ? MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name) : NULL;
}

const char *of_http_req_query(const of_http_request *req, const char *name)
{
    return req->conn != NULL ? MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name)
                             : NULL;
}

const char *of_http_req_body(const of_http_request *req, size_t *len)
{
    *len = req->len;
    return req->body;
}

void of_http_req_set_data(of_http_request *req, void *data)
{
    req->data = data;
}

void *of_http_req_data(const of_http_request *req)
{
    return req->data;
}

static void access_log(const of_http_request *req)
{
    struct timespec now;
    double ms;
    if (!req->h->access_log)
        return;
    clock_gettime(CLOCK_MONOTONIC, &now);
    ms = (double)(now.tv_sec - req->started.tv_sec) * 1e3 +
         (double)(now.tv_nsec - req->started.tv_nsec) / 1e6;
    of_log_info("http %s %s %u %zu bytes %.1f ms", req->method, req->path ? req->path : "?",
                req->status, req->response_len, ms);
}

/* Queues the answer on the connection (state DONE). */
static enum MHD_Result queue(of_http_request *req)
{
    enum MHD_Result ret = MHD_NO;
    req->state = REQ_DONE;
    req->h->requests++;
    if (req->conn != NULL && req->response != NULL)
        ret = MHD_queue_response(req->conn, req->status, req->response);
    access_log(req);
    return ret;
}

int of_http_answer(of_http_request *req, int status, const char *content_type, const char *body,
                   size_t len, const char *const *headers)
{
    int rc = 0;
    if (!req->handler_ref)
        return OF_ESTATE;
    req->handler_ref = false;
    if (req->state != REQ_HANDLING && req->state != REQ_SUSPENDED) {
        /* Answered for the handler already (the server closed). */
        unref(req);
        return 0;
    }
    req->response = MHD_create_response_from_buffer(len, (void *)(body != NULL ? body : ""),
                                                    MHD_RESPMEM_MUST_COPY);
    if (req->response == NULL) {
        static const char oom[] = "{\"error\":\"INTERNAL\",\"reason\":\"out of memory\"}\n";
        req->response =
            MHD_create_response_from_buffer(sizeof oom - 1, (void *)oom, MHD_RESPMEM_PERSISTENT);
        status = 500;
        headers = NULL;
        rc = OF_ENOMEM;
    }
    req->status = status >= 100 && status <= 599 ? (unsigned int)status : 500;
    req->response_len = len;
    if (req->response != NULL) {
        MHD_add_response_header(req->response, MHD_HTTP_HEADER_CONTENT_TYPE,
                                content_type != NULL ? content_type : "application/json");
        MHD_add_response_header(req->response, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
        for (size_t i = 0; headers != NULL && headers[i] != NULL && headers[i + 1] != NULL; i += 2)
            MHD_add_response_header(req->response, headers[i], headers[i + 1]);
    }
    if (req->state == REQ_SUSPENDED) {
        unlink_pending(req);
        req->state = REQ_ANSWERED;
        if (req->conn != NULL) {
            MHD_resume_connection(req->conn);
            /* MHD calls the access handler again from its next run. */
            uv_timer_start(&req->h->resume_timer, of_http_on_resume, 0, 0);
        }
    }
    /* REQ_HANDLING: queued by of_http_api_request when the handler returns. */
    unref(req);
    return rc;
}

enum MHD_Result of_http_api_request(of_http *h, struct MHD_Connection *conn, const char *url,
                                    const char *method, const char *upload_data,
                                    size_t *upload_data_size, void **con_cls)
{
    of_http_request *req = *con_cls;
    if (req == NULL) {
        req = calloc(1, sizeof *req);
        if (req == NULL)
            return MHD_NO; /* MHD closes the connection */
        req->h = h;
        req->conn = conn;
        req->refs = 1; /* MHD's, released in of_http_api_completed */
        snprintf(req->method, sizeof req->method, "%s", method);
        req->path = strdup(url);
        clock_gettime(CLOCK_MONOTONIC, &req->started);
        *con_cls = req;
        return req->path != NULL ? MHD_YES : MHD_NO;
    }
    if (req->state == REQ_READING && *upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (req->too_large || req->len + n > h->body_limit) {
            req->too_large = true; /* the rest is read and dropped */
            return MHD_YES;
        }
        if (req->len + n + 1 > req->cap) {
            size_t cap = req->cap ? req->cap * 2 : 1024;
            while (cap < req->len + n + 1)
                cap *= 2;
            char *b = realloc(req->body, cap);
            if (b == NULL)
                return MHD_NO;
            req->body = b;
            req->cap = cap;
        }
        memcpy(req->body + req->len, upload_data, n);
        req->len += n;
        req->body[req->len] = '\0';
        return MHD_YES;
    }
    if (req->state == REQ_ANSWERED)
        return queue(req);
    if (req->state != REQ_READING)
        return MHD_YES; /* suspended, or done: nothing to do */
    if (req->too_large) {
        static const char msg[] = "{\"error\":\"BODY_TOO_LARGE\",\"reason\":\"the request body "
                                  "is larger than the limit\"}\n";
        req->response =
            MHD_create_response_from_buffer(sizeof msg - 1, (void *)msg, MHD_RESPMEM_PERSISTENT);
        if (req->response == NULL)
            return MHD_NO;
        MHD_add_response_header(req->response, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
        req->status = 413;
        req->response_len = sizeof msg - 1;
        return queue(req);
    }
    req->state = REQ_HANDLING;
    req->refs++; /* the handler's */
    req->handler_ref = true;
    h->handler(h->handler_arg, req);
    if (req->response != NULL)
        return queue(req); /* answered at once */
    /* Later: keep the connection out of MHD's polling until the answer. */
    req->state = REQ_SUSPENDED;
    req->next = h->pending;
    if (h->pending != NULL)
        h->pending->prev = req;
    h->pending = req;
    MHD_suspend_connection(conn);
    return MHD_YES;
}

void of_http_api_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                           enum MHD_RequestTerminationCode code)
{
    of_http_request *req = *con_cls;
    (void)cls;
    (void)conn;
    (void)code;
    if (req == NULL || *con_cls == (void *)&of_http_route_started)
        return; /* a route's request holds nothing */
    *con_cls = NULL;
    req->conn = NULL;
    if (req->state == REQ_SUSPENDED)
        unlink_pending(req);
    if (req->state != REQ_DONE)
        req->state = REQ_DONE;
    unref(req);
}

void of_http_api_close(of_http *h)
{
    /* Their connections are dropped with the daemon. */
    while (h->pending != NULL) {
        of_http_request *req = h->pending;
        unlink_pending(req);
        /* The handler's later of_http_answer() only drops its reference. */
        req->state = REQ_DONE;
        if (req->conn != NULL)
            MHD_resume_connection(req->conn);
    }
}

int of_http_set_handler(of_http *h, of_http_handler_fn fn, void *arg, size_t body_limit)
{
    if (fn == NULL || h->daemon != NULL)
        return OF_EINVAL;
    h->handler = fn;
    h->handler_arg = arg;
    h->body_limit = body_limit;
    return 0;
}
