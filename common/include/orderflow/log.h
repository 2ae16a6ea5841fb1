/* log.h: JSON-lines logging on stderr, shared by every orderflow process.
 *
 * Each line is one JSON object: {"ts","level","worker","msg", and when known
 * "subject","topic","partition","offset","ce_id"}. librdkafka's and libpq's
 * messages are routed here through of_log_rdkafka_cb() and
 * of_log_pq_notice(), so an operator reads one stream.
 *
 * Ownership: the logger copies what it needs; callers keep their strings. */
#ifndef ORDERFLOW_LOG_H
#define ORDERFLOW_LOG_H

#include <stdint.h>
#include <stdio.h>

typedef enum of_log_level {
    OF_LOG_DEBUG = 0,
    OF_LOG_INFO = 1,
    OF_LOG_WARN = 2,
    OF_LOG_ERROR = 3,
} of_log_level;

/* Where a message happened; every field is optional (NULL / -1). */
typedef struct of_log_ctx {
    const char *subject;  /* the entity the message is about (ce_subject), or NULL */
    const char *ce_id;    /* CloudEvent id being handled, or NULL */
    const char *topic;    /* Kafka topic, or NULL */
    int32_t partition;    /* Kafka partition, or -1 */
    int64_t offset;       /* Kafka offset, or -1 */
    const char *trace_id; /* W3C trace id of the event's step (trace.h), or NULL */
} of_log_ctx;

#define OF_LOG_CTX_NONE ((of_log_ctx){NULL, NULL, NULL, -1, -1, NULL})

/* Sets the process name written in the "worker" field (copied, at most 63 bytes). */
void of_log_init(const char *worker);
void of_log_set_level(of_log_level level);
of_log_level of_log_get_level(void);
/* Parses "debug", "info", "warn", "error"; returns 0 or OF_EINVAL when unknown. */
int of_log_level_parse(const char *text, of_log_level *out);
/* Redirects output (tests); NULL restores stderr. The stream is not closed. */
void of_log_set_stream(FILE *stream);

void of_log_write(of_log_level level, const of_log_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define of_log_debug(...) of_log_write(OF_LOG_DEBUG, NULL, __VA_ARGS__)
#define of_log_info(...)  of_log_write(OF_LOG_INFO, NULL, __VA_ARGS__)
#define of_log_warn(...)  of_log_write(OF_LOG_WARN, NULL, __VA_ARGS__)
#define of_log_error(...) of_log_write(OF_LOG_ERROR, NULL, __VA_ARGS__)

/* Writes the JSON-escaped form of src (without quotes) into dst, always NUL
 * terminated, truncating at dstsize. Returns the length written. */
size_t of_log_json_escape(char *dst, size_t dstsize, const char *src);

/* librdkafka log callback (rd_kafka_conf_set_log_cb); level is syslog's. */
struct rd_kafka_s;
void of_log_rdkafka_cb(const struct rd_kafka_s *rk, int level, const char *fac, const char *buf);
/* libpq notice processor (PQsetNoticeProcessor); arg is unused. */
void of_log_pq_notice(void *arg, const char *message);

#endif
