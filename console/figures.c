/* figures.c: the live figures: the workers' /metrics, sampled every 5 s.
 *
 * Every 5 s the console sends GET to each URL of --metrics-urls (plain
 * HTTP/1.0 over libuv TCP; a source that does not answer within 3 s is
 * skipped that round) and adds up what the workers export:
 *   events/s       the increase of orderflow_events_processed_total
 *   lag            orderflow_consumer_lag, every partition
 *   oldest outbox  orderflow_outbox_oldest_unpublished_age_seconds (max:
 *                  every worker reports the same, database-wide value)
 *   dead/min       the increase of orderflow_events_dead_lettered_total
 *   parked         orderflow_parked_keys (max, database-wide)
 * A counter that went down (a worker restarted) counts from zero. The last
 * 120 samples (10 minutes) are kept for the charts. */
#include "console.h"

#include "orderflow/log.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#define SAMPLE_MS     5000
#define SCRAPE_MAX_MS 3000
#define BODY_MAX      (4u << 20)

typedef struct con_scrape {
    console *c;
    const char *url; /* the URL (c->urls[i]) */
    char host[256];
    char port[8];
    char path[512];
    uv_getaddrinfo_t gai;
    uv_tcp_t tcp;
    uv_connect_t conn;
    uv_write_t wr;
    char request[1024];
    char *body; /* response so far */
    size_t len;
    bool busy;                                   /* a scrape is in flight */
    bool ok;                                     /* the last one parsed */
    double processed, lag, oldest, dead, parked; /* what it reported */
} con_scrape;

static int parse_url(con_scrape *s, const char *url)
{
    const char *p = url, *slash, *colon;
    if (strncmp(p, "http://", 7) != 0)
        return -1;
    p += 7;
    slash = strchr(p, '/');
    if (slash == NULL)
        slash = p + strlen(p);
    colon = memchr(p, ':', (size_t)(slash - p));
    if (colon == NULL || colon == p || (size_t)(colon - p) >= sizeof s->host ||
        (size_t)(slash - colon - 1) >= sizeof s->port || slash - colon - 1 < 1)
        return -1;
    memcpy(s->host, p, (size_t)(colon - p));
    s->host[colon - p] = '\0';
    memcpy(s->port, colon + 1, (size_t)(slash - colon - 1));
    s->port[slash - colon - 1] = '\0';
    snprintf(s->path, sizeof s->path, "%s", *slash ? slash : "/metrics");
    int n = snprintf(s->request, sizeof s->request,
                     "GET %.500s HTTP/1.0\r\nHost: %.255s:%.7s\r\nAccept: text/plain\r\n\r\n",
                     s->path, s->host, s->port);
    return n > 0 && (size_t)n < sizeof s->request ? 0 : -1;
}

/* The sum (or max) of the samples of metric name in a Prometheus text body. */
static double metric(const char *body, const char *name, bool max)
{
    size_t n = strlen(name);
    double v = 0;
    for (const char *line = body; line != NULL && *line; line = strchr(line, '\n')) {
        if (*line == '\n')
            line++;
        if (strncmp(line, name, n) != 0 || (line[n] != ' ' && line[n] != '{'))
            continue;
        const char *sp = line[n] == '{' ? strchr(line, '}') : line + n;
        if (sp == NULL)
            continue;
        double x = strtod(sp + 1, NULL);
        if (!isfinite(x))
            continue;
        v = max ? (x > v ? x : v) : v + x;
    }
    return v;
}

static void scrape_done(con_scrape *s)
{
    s->ok = false;
    if (s->body != NULL) {
        const char *text = strstr(s->body, "\r\n\r\n");
        if (strncmp(s->body, "HTTP/1.", 7) == 0 && strncmp(s->body + 9, "200", 3) == 0 && text) {
            s->ok = true;
            s->processed = metric(text, "orderflow_events_processed_total", false);
            s->lag = metric(text, "orderflow_consumer_lag", false);
            s->oldest = metric(text, "orderflow_outbox_oldest_unpublished_age_seconds", true);
            s->dead = metric(text, "orderflow_events_dead_lettered_total", false);
            s->parked = metric(text, "orderflow_parked_keys", true);
        }
    }
    free(s->body);
    s->body = NULL;
    s->len = 0;
    s->busy = false;
}

static void on_tcp_closed(uv_handle_t *h)
{
    scrape_done(h->data);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    (void)h;
    b->base = malloc(suggested);
    b->len = b->base != NULL ? suggested : 0;
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    con_scrape *s = st->data;
    if (n > 0 && s->len + (size_t)n <= BODY_MAX) {
        char *p = realloc(s->body, s->len + (size_t)n + 1);
        if (p != NULL) {
            memcpy(p + s->len, b->base, (size_t)n);
            s->len += (size_t)n;
            p[s->len] = '\0';
            s->body = p;
        }
    }
    free(b->base);
    if (n < 0)
        uv_close((uv_handle_t *)&s->tcp, on_tcp_closed);
}

static void on_written(uv_write_t *w, int status)
{
    con_scrape *s = w->data;
    if (status != 0 || uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read) != 0)
        uv_close((uv_handle_t *)&s->tcp, on_tcp_closed);
}

static void on_connected(uv_connect_t *cr, int status)
{
    con_scrape *s = cr->data;
    uv_buf_t b = uv_buf_init(s->request, (unsigned int)strlen(s->request));
    s->wr.data = s;
    if (status != 0 || uv_write(&s->wr, (uv_stream_t *)&s->tcp, &b, 1, on_written) != 0)
        uv_close((uv_handle_t *)&s->tcp, on_tcp_closed);
}

static void on_resolved(uv_getaddrinfo_t *g, int status, struct addrinfo *ai)
{
    con_scrape *s = g->data;
    if (status != 0 || ai == NULL || s->c->stopping) {
        uv_freeaddrinfo(ai);
        scrape_done(s);
        return;
    }
    uv_tcp_init(s->c->loop, &s->tcp);
    s->tcp.data = s;
    s->conn.data = s;
    if (uv_tcp_connect(&s->conn, &s->tcp, ai->ai_addr, on_connected) != 0)
        uv_close((uv_handle_t *)&s->tcp, on_tcp_closed);
    uv_freeaddrinfo(ai);
}

static void scrape(con_scrape *s)
{
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    s->busy = true;
    s->gai.data = s;
    if (uv_getaddrinfo(s->c->loop, &s->gai, on_resolved, s->host, s->port, &hints) != 0)
        scrape_done(s);
}

/* Adds up the last round and starts the next. */
static void on_sample(uv_timer_t *t)
{
    console *c = t->data;
    struct timeval tv;
    double processed = 0, dead = 0, now;
    con_sample smp;

    gettimeofday(&tv, NULL);
    now = (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
    memset(&smp, 0, sizeof smp);
    smp.t = now;
    for (size_t i = 0; i < c->n_urls; i++) {
        con_scrape *s = &c->scrapes[i];
        if (s->busy) {
            /* No answer within the round: the connection is dropped. */
            if (uv_is_active((uv_handle_t *)&s->tcp) && !uv_is_closing((uv_handle_t *)&s->tcp))
                uv_close((uv_handle_t *)&s->tcp, on_tcp_closed);
            continue;
        }
        if (!s->ok)
            continue;
        smp.sources_ok++;
        processed += s->processed;
        dead += s->dead;
        smp.lag += s->lag;
        smp.oldest_outbox = s->oldest > smp.oldest_outbox ? s->oldest : smp.oldest_outbox;
        smp.parked = s->parked > smp.parked ? s->parked : smp.parked;
    }
    if (c->have_prev && now > c->prev_t) {
        double dt = now - c->prev_t;
        smp.events_per_s = processed >= c->prev_events ? (processed - c->prev_events) / dt : 0;
        smp.dead_per_min = dead >= c->prev_dead ? (dead - c->prev_dead) * 60.0 / dt : 0;
    }
    if (smp.sources_ok > 0) {
        c->prev_events = processed;
        c->prev_dead = dead;
        c->prev_t = now;
        c->have_prev = true;
        c->samples[c->n_samples % CON_SAMPLES] = smp;
        c->n_samples++;
    }
    for (size_t i = 0; !c->stopping && i < c->n_urls; i++)
        if (!c->scrapes[i].busy)
            scrape(&c->scrapes[i]);
}

int con_figures_start(console *c)
{
    char *list = strdup(c->cfg.metrics_urls != NULL ? c->cfg.metrics_urls : "");
    char *save = NULL;
    if (list == NULL)
        return -1;
    for (char *u = strtok_r(list, ", ", &save); u != NULL; u = strtok_r(NULL, ", ", &save)) {
        char **v = realloc(c->urls, (c->n_urls + 1) * sizeof *v);
        if (v == NULL)
            break;
        c->urls = v;
        c->urls[c->n_urls++] = strdup(u);
    }
    free(list);
    c->scrapes = calloc(c->n_urls + 1, sizeof *c->scrapes);
    if (c->scrapes == NULL)
        return -1;
    for (size_t i = 0; i < c->n_urls; i++) {
        c->scrapes[i].c = c;
        c->scrapes[i].url = c->urls[i];
        if (c->urls[i] == NULL || parse_url(&c->scrapes[i], c->urls[i]) != 0)
            return -1;
    }
    uv_timer_init(c->loop, &c->figures_timer);
    c->figures_timer.data = c;
    uv_timer_start(&c->figures_timer, on_sample, 100, SAMPLE_MS);
    return 0;
}

static void on_timer_closed(uv_handle_t *h)
{
    (void)h;
}

void con_figures_stop(console *c)
{
    if (c->scrapes == NULL)
        return;
    uv_timer_stop(&c->figures_timer);
    uv_close((uv_handle_t *)&c->figures_timer, on_timer_closed);
    for (size_t i = 0; i < c->n_urls; i++) {
        con_scrape *s = &c->scrapes[i];
        if (s->busy && uv_is_active((uv_handle_t *)&s->tcp) &&
            !uv_is_closing((uv_handle_t *)&s->tcp))
            uv_close((uv_handle_t *)&s->tcp, on_tcp_closed);
    }
}

char *con_figures_json(const console *c)
{
    cJSON *o = cJSON_CreateObject(), *src = cJSON_AddArrayToObject(o, "sources"),
          *arr = cJSON_AddArrayToObject(o, "samples");
    char *text = NULL;
    if (o == NULL || src == NULL || arr == NULL)
        goto out;
    for (size_t i = 0; i < c->n_urls; i++) {
        cJSON *s = cJSON_CreateObject();
        cJSON_AddItemToArray(src, s);
        cJSON_AddStringToObject(s, "url", c->urls[i]);
        cJSON_AddBoolToObject(s, "ok", c->scrapes[i].ok);
    }
    size_t n = c->n_samples < CON_SAMPLES ? c->n_samples : CON_SAMPLES;
    for (size_t k = 0; k < n; k++) {
        const con_sample *p = &c->samples[(c->n_samples - n + k) % CON_SAMPLES];
        cJSON *s = cJSON_CreateObject();
        cJSON_AddItemToArray(arr, s);
        cJSON_AddNumberToObject(s, "t", floor(p->t * 1000) / 1000);
        cJSON_AddNumberToObject(s, "events_per_s", round(p->events_per_s * 10) / 10);
        cJSON_AddNumberToObject(s, "lag", p->lag);
        cJSON_AddNumberToObject(s, "oldest_outbox_s", round(p->oldest_outbox * 10) / 10);
        cJSON_AddNumberToObject(s, "dead_per_min", round(p->dead_per_min * 10) / 10);
        cJSON_AddNumberToObject(s, "parked", p->parked);
        cJSON_AddNumberToObject(s, "sources_ok", p->sources_ok);
    }
    text = cJSON_PrintUnformatted(o);
out:
    cJSON_Delete(o);
    return text;
}
