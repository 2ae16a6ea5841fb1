/* hostile_produce.c: publishes records with arbitrary bytes in every part, for the failure-class
 * tests.
 *
 * kcat takes keys and headers as command-line text, which cannot hold a NUL
 * byte; this helper takes every part as hex. Usage:
 *     hostile_produce BOOTSTRAP TOPIC PARTITION < records
 * One record per input line, fields separated by blanks:
 *     k=<hex>             the key (absent: no key)
 *     v=<hex>             the value (absent: no value)
 *     h=<hex>:<hex>       a header, name and value (repeatable; name bytes
 *                         up to the first NUL are what a consumer sees)
 * Each line is produced to PARTITION and the program waits for every
 * delivery; it exits 0 only when all were acknowledged. */
#include <librdkafka/rdkafka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LINE_MAX_BYTES (1 << 20)

static int failed;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "hostile_produce: delivery failed: %s\n", rd_kafka_err2str(m->err));
        failed = 1;
    }
}

static int nibble(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes n hex digits of s into out (n/2 bytes); -1 on a bad digit. */
static long unhex(const char *s, size_t n, char *out)
{
    if (n % 2 != 0)
        return -1;
    for (size_t i = 0; i < n; i += 2) {
        int hi = nibble(s[i]), lo = nibble(s[i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i / 2] = (char)(hi << 4 | lo);
    }
    return (long)(n / 2);
}

static int produce_line(rd_kafka_t *rk, const char *topic, int32_t partition, char *line)
{
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(8);
    char *key = NULL, *value = NULL;
    long key_len = -1, value_len = -1;
    int rc = -1;
    for (char *tok = strtok(line, " \t\n"); tok != NULL; tok = strtok(NULL, " \t\n")) {
        size_t n = strlen(tok);
        char *buf = malloc(n / 2 + 1);
        if (buf == NULL)
            goto out;
        if (strncmp(tok, "k=", 2) == 0) {
            free(key);
            key = buf;
            key_len = unhex(tok + 2, n - 2, key);
        } else if (strncmp(tok, "v=", 2) == 0) {
            free(value);
            value = buf;
            value_len = unhex(tok + 2, n - 2, value);
        } else if (strncmp(tok, "h=", 2) == 0 && strchr(tok, ':') != NULL) {
            char *colon = strchr(tok, ':');
            char *vbuf = malloc(n / 2 + 1);
            long nl = unhex(tok + 2, (size_t)(colon - tok - 2), buf);
            long vl = vbuf ? unhex(colon + 1, strlen(colon + 1), vbuf) : -1;
            if (nl < 0 || vl < 0 ||
                rd_kafka_header_add(hdrs, buf, nl, vbuf, vl) != RD_KAFKA_RESP_ERR_NO_ERROR) {
                free(buf);
                free(vbuf);
                goto out;
            }
            free(buf);
            free(vbuf);
        } else {
            free(buf);
            fprintf(stderr, "hostile_produce: bad field \"%s\"\n", tok);
            goto out;
        }
    }
    if ((key != NULL && key_len < 0) || (value != NULL && value_len < 0))
        goto out;
    size_t klen = key != NULL ? (size_t)key_len : 0;
    size_t vlen = value != NULL ? (size_t)value_len : 0;
    void *kptr = key, *vptr = value;
    rd_kafka_resp_err_t err = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition), RD_KAFKA_V_KEY(kptr, klen),
        RD_KAFKA_V_VALUE(vptr, vlen), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "hostile_produce: %s\n", rd_kafka_err2str(err));
        goto out;
    }
    hdrs = NULL; /* taken over by the producer */
    rc = 0;
out:
    if (hdrs != NULL)
        rd_kafka_headers_destroy(hdrs);
    free(key);
    free(value);
    return rc;
}

int main(int argc, char **argv)
{
    char errstr[512];
    char *line = malloc(LINE_MAX_BYTES);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;
    int rc = 0;
    if (argc != 4 || line == NULL) {
        fprintf(stderr, "usage: hostile_produce BOOTSTRAP TOPIC PARTITION < records\n");
        return 64;
    }
    if (rd_kafka_conf_set(conf, "bootstrap.servers", argv[1], errstr, sizeof errstr) !=
        RD_KAFKA_CONF_OK)
        return 78;
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (rk == NULL) {
        fprintf(stderr, "hostile_produce: %s\n", errstr);
        return 69;
    }
    while (rc == 0 && fgets(line, LINE_MAX_BYTES, stdin) != NULL)
        rc = produce_line(rk, argv[2], (int32_t)atoi(argv[3]), line);
    if (rd_kafka_flush(rk, 30000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        rc = 1;
    rd_kafka_destroy(rk);
    free(line);
    return rc != 0 || failed ? 1 : 0;
}
