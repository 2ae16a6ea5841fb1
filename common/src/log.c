/* log.c: JSON-lines logger on stderr with Kafka and entity context, and the
 * adapters that route librdkafka's and libpq's messages into it. */
#include "orderflow/log.h"

#include "orderflow/error.h"

#include <inttypes.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>

static char log_worker[64] = "orderflow";
static of_log_level log_level = OF_LOG_INFO;
static FILE *log_stream;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void of_log_init(const char *worker)
{
    snprintf(log_worker, sizeof log_worker, "%s", worker ? worker : "orderflow");
}

void of_log_set_level(of_log_level level)
{
    log_level = level;
}

of_log_level of_log_get_level(void)
{
    return log_level;
}

void of_log_set_stream(FILE *stream)
{
    log_stream = stream;
}

int of_log_level_parse(const char *text, of_log_level *out)
{
    if (text == NULL)
        return OF_EINVAL;
    for (int i = 0; i < 4; i++) {
        if (strcmp(text, level_names[i]) == 0) {
            *out = (of_log_level)i;
            return 0;
        }
    }
    if (strcmp(text, "warning") == 0) {
        *out = OF_LOG_WARN;
        return 0;
    }
    return OF_EINVAL;
}

size_t of_log_json_escape(char *dst, size_t dstsize, const char *src)
{
    size_t n = 0;
    if (dstsize == 0)
        return 0;
    for (; src != NULL && *src != '\0'; src++) {
        unsigned char c = (unsigned char)*src;
        char esc[8];
        size_t len;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            len = 2;
        } else if (c == '\n') {
            memcpy(esc, "\\n", 2);
            len = 2;
        } else if (c == '\t') {
            memcpy(esc, "\\t", 2);
            len = 2;
        } else if (c == '\r') {
            memcpy(esc, "\\r", 2);
            len = 2;
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            len = 6;
        } else {
            esc[0] = (char)c;
            len = 1;
        }
        if (n + len >= dstsize)
            break;
        memcpy(dst + n, esc, len);
        n += len;
    }
    dst[n] = '\0';
    return n;
}

/* Appends ,"key":"escaped value" to line when value is set. */
static size_t add_string_field(char *line, size_t size, size_t used, const char *key,
                               const char *value)
{
    char esc[512];
    if (value == NULL || used >= size)
        return used;
    of_log_json_escape(esc, sizeof esc, value);
    int n = snprintf(line + used, size - used, ",\"%s\":\"%s\"", key, esc);
    if (n < 0)
        return used;
    return (size_t)n >= size - used ? size - 1 : used + (size_t)n;
}

void of_log_write(of_log_level level, const of_log_ctx *ctx, const char *fmt, ...)
{
    char msg[2048], esc[4096], line[6144], ts[40];
    struct timespec now;
    struct tm tm;
    va_list ap;

    if (level < log_level)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    of_log_json_escape(esc, sizeof esc, msg);

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof ts - 6, "%Y-%m-%dT%H:%M:%S", &tm);
    size_t tslen = strlen(ts);
    snprintf(ts + tslen, sizeof ts - tslen, ".%03dZ", (int)(now.tv_nsec / 1000000L) % 1000);

    int n = snprintf(line, sizeof line, "{\"ts\":\"%s\",\"level\":\"%s\",\"worker\":\"%s\"", ts,
                     level_names[level], log_worker);
    size_t used = n < 0 ? 0 : (size_t)n;
    if (ctx != NULL) {
        used = add_string_field(line, sizeof line, used, "subject", ctx->subject);
        used = add_string_field(line, sizeof line, used, "ce_id", ctx->ce_id);
        used = add_string_field(line, sizeof line, used, "trace_id", ctx->trace_id);
        used = add_string_field(line, sizeof line, used, "topic", ctx->topic);
        if (ctx->partition >= 0 && used < sizeof line) {
            n = snprintf(line + used, sizeof line - used, ",\"partition\":%" PRId32,
                         ctx->partition);
            used = n < 0 ? used : used + (size_t)n;
        }
        if (ctx->offset >= 0 && used < sizeof line) {
            n = snprintf(line + used, sizeof line - used, ",\"offset\":%" PRId64, ctx->offset);
            used = n < 0 ? used : used + (size_t)n;
        }
    }
    if (used < sizeof line)
        snprintf(line + used, sizeof line - used, ",\"msg\":\"%s\"}\n", esc);
    /* One fputs of the whole line keeps lines whole when threads (librdkafka's
     * log callback may run on its threads) write at the same time. */
    FILE *out = log_stream ? log_stream : stderr;
    fputs(line, out);
    fflush(out);
}

void of_log_rdkafka_cb(const struct rd_kafka_s *rk, int level, const char *fac, const char *buf)
{
    of_log_level l = level <= 3   ? OF_LOG_ERROR
                     : level <= 4 ? OF_LOG_WARN
                     : level <= 6 ? OF_LOG_INFO
                                  : OF_LOG_DEBUG;
    of_log_write(l, NULL, "librdkafka %s: %s", fac ? fac : "-", buf ? buf : "");
}

void of_log_pq_notice(void *arg, const char *message)
{
    char text[1024];
    size_t len;
    snprintf(text, sizeof text, "%s", message ? message : "");
    len = strlen(text);
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == ' '))
        text[--len] = '\0';
    of_log_write(OF_LOG_INFO, NULL, "postgres: %s", text);
}
