/* run.c: orderctl as a child process, for the console's dead-letter and parking pages.
 *
 * The console does not reimplement what orderctl does (list, show, redrive
 * with its records and dry run, release): it runs the same program with
 * --json, without a shell (arguments are passed as they are, never parsed
 * by one), with the console's environment (DATABASE_URL, Kafka settings,
 * topic prefix), and answers the request with what it printed. Output is
 * capped at 8 MiB; a child that runs longer than 60 s is killed. */
#include "console.h"

#include "orderflow/log.h"

#include <cjson/cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OUT_MAX    (8u << 20)
#define RUN_MAX_MS 60000

typedef struct run {
    console *c;
    of_http_request *req;
    uv_process_t proc;
    uv_pipe_t out, err;
    uv_timer_t timer;
    char *buf[2]; /* stdout, stderr */
    size_t len[2];
    bool truncated;
    int64_t status; /* exit status, or -1 until known */
    int term_signal;
    int open; /* handles still to close */
    bool answered;
} run;

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)h;
    b->base = malloc(suggested);
    b->len = b->base != NULL ? suggested : 0;
}

static void finish(run *r);
static void on_closed(uv_handle_t *h);

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    run *r = s->data;
    int k = s == (uv_stream_t *)&r->out ? 0 : 1;
    if (n > 0) {
        if (r->len[k] + (size_t)n <= OUT_MAX) {
            char *p = realloc(r->buf[k], r->len[k] + (size_t)n + 1);
            if (p != NULL) {
                memcpy(p + r->len[k], b->base, (size_t)n);
                r->len[k] += (size_t)n;
                p[r->len[k]] = '\0';
                r->buf[k] = p;
            }
        } else {
            r->truncated = true;
        }
    }
    free(b->base);
    if (n < 0) /* the end (or an error): the pipe is done */
        uv_close((uv_handle_t *)s, on_closed);
}

static void on_closed(uv_handle_t *h)
{
    run *r = h->data;
    if (--r->open == 0)
        finish(r);
}

static void on_exit_cb(uv_process_t *p, int64_t status, int term_signal)
{
    run *r = p->data;
    r->status = status;
    r->term_signal = term_signal;
    uv_timer_stop(&r->timer);
    /* The pipes close when their end is read (on_read). */
    uv_close((uv_handle_t *)&r->proc, on_closed);
    uv_close((uv_handle_t *)&r->timer, on_closed);
}

static void on_timeout(uv_timer_t *t)
{
    run *r = t->data;
    of_log_warn("console: orderctl ran longer than %d ms; killing it", RUN_MAX_MS);
    uv_process_kill(&r->proc, SIGKILL);
}

/* A JSON error body: {"error": why, "exit": code, "stderr": text}. */
static void answer_error(run *r, int http, const char *why)
{
    cJSON *o = cJSON_CreateObject();
    char *body = NULL;
    if (o != NULL) {
        cJSON_AddStringToObject(o, "error", why);
        cJSON_AddNumberToObject(o, "exit", (double)r->status);
        cJSON_AddStringToObject(o, "stderr", r->buf[1] != NULL ? r->buf[1] : "");
        body = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
    }
    of_http_answer(r->req, http, "application/json", body ? body : "{}", body ? strlen(body) : 2,
                   NULL);
    free(body);
}

static void finish(run *r)
{
    console *c = r->c;
    if (r->truncated) {
        answer_error(r, 502, "orderctl printed more than the console takes");
    } else if (r->status == 0 && r->term_signal == 0) {
        const char *out = r->buf[0] != NULL ? r->buf[0] : "";
        /* Only JSON goes back as JSON: a command that printed text (no --json
         * form) is wrapped, never passed through as markup. */
        cJSON *j = cJSON_Parse(out);
        if (j != NULL) {
            of_http_answer(r->req, 200, "application/json", out, strlen(out), NULL);
            cJSON_Delete(j);
        } else {
            cJSON *o = cJSON_CreateObject();
            char *body = NULL;
            if (o != NULL && cJSON_AddStringToObject(o, "text", out) != NULL)
                body = cJSON_PrintUnformatted(o);
            cJSON_Delete(o);
            of_http_answer(r->req, 200, "application/json", body ? body : "{}",
                           body ? strlen(body) : 2, NULL);
            free(body);
        }
    } else if (r->status == 66) {
        answer_error(r, 404, "not found");
    } else if (r->status == 64 || r->status == 65) {
        answer_error(r, 400, "orderctl refused the request");
    } else {
        answer_error(r, 502, r->term_signal != 0 ? "orderctl was killed" : "orderctl failed");
    }
    c->in_progress--;
    free(r->buf[0]);
    free(r->buf[1]);
    free(r);
}

void con_run_orderctl(console *c, of_http_request *req, const char *const *argv)
{
    run *r = calloc(1, sizeof *r);
    uv_process_options_t opt;
    uv_stdio_container_t stdio[3];
    char *args[32];
    size_t n = 0;
    int rc;

    if (r == NULL) {
        of_http_answer(req, 500, "application/json", "{\"error\":\"out of memory\"}", 25, NULL);
        return;
    }
    r->c = c;
    r->req = req;
    r->status = -1;
    args[n++] = c->cfg.orderctl;
    for (size_t i = 1; argv[i] != NULL && n + 1 < sizeof args / sizeof args[0]; i++)
        args[n++] = (char *)argv[i];
    args[n] = NULL;
    uv_pipe_init(c->loop, &r->out, 0);
    uv_pipe_init(c->loop, &r->err, 0);
    uv_timer_init(c->loop, &r->timer);
    r->out.data = r->err.data = r->timer.data = r->proc.data = r;
    memset(&opt, 0, sizeof opt);
    stdio[0].flags = UV_IGNORE;
    stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[1].data.stream = (uv_stream_t *)&r->out;
    stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[2].data.stream = (uv_stream_t *)&r->err;
    opt.file = c->cfg.orderctl;
    opt.args = args;
    opt.exit_cb = on_exit_cb;
    opt.stdio = stdio;
    opt.stdio_count = 3;
    c->in_progress++;
    rc = uv_spawn(c->loop, &r->proc, &opt);
    if (rc != 0) {
        of_log_error("console: could not run \"%s\": %s", c->cfg.orderctl, uv_strerror(rc));
        r->status = 127;
        r->open = 3;
        uv_close((uv_handle_t *)&r->out, on_closed);
        uv_close((uv_handle_t *)&r->err, on_closed);
        uv_close((uv_handle_t *)&r->timer, on_closed);
        /* finish() answers 502 once the handles are closed. */
        return;
    }
    r->open = 4;
    uv_read_start((uv_stream_t *)&r->out, on_alloc, on_read);
    uv_read_start((uv_stream_t *)&r->err, on_alloc, on_read);
    uv_timer_start(&r->timer, on_timeout, RUN_MAX_MS, 0);
}
