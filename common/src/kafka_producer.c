/* kafka_producer.c: the idempotent producer served from the libuv loop, and topic creation for CLIs
 * and tests. */
#include "kafka_internal.h"

#include "orderflow/failpoint.h"

#include "orderflow/log.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Producer. */

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    of_producer *p = opaque;
    if (p->dr != NULL)
        p->dr(p, m->_private, m->err, p->arg);
    if (of_failpoint("producer-fatal"))
        (void)rd_kafka_test_fatal_error(rk, RD_KAFKA_RESP_ERR_PRODUCER_FENCED,
                                        "failpoint producer-fatal");
}

static void producer_serve(of_producer *p)
{
    if (p->rk != NULL)
        rd_kafka_poll(p->rk, 0);
}

static void on_producer_pipe(uv_poll_t *h, int status, int events)
{
    of_producer *p = h->data;
    of_kafka__drain_pipe(p->fds[0]);
    producer_serve(p);
}

int of_producer_init(of_producer *p, uv_loop_t *loop, rd_kafka_conf_t *conf, of_producer_dr_cb dr,
                     void *arg)
{
    char errstr[512];
    memset(p, 0, sizeof *p);
    p->fds[0] = p->fds[1] = -1;
    p->dr = dr;
    p->arg = arg;
    /* linger.ms=0: no hop of a pipeline waits for a timer; while requests are in
     * flight the producer batches anyway. Chosen by measurement on 2 cores (the
     * figures are in bench/README.md, "Kafka settings"): the p99 end to end at 100
     * and 1,000 pipelines/s fell to about half of linger.ms=5's. KAFKA_LINGER_MS
     * overrides it where throughput matters more than latency. */
    if (of_kafka__set_prop(conf, "enable.idempotence", "true", errstr, sizeof errstr) != 0 ||
        of_kafka__set_default(conf, "linger.ms", "0", errstr, sizeof errstr) != 0 ||
        /* 20 s: a message not delivered by then fails to the outbox sweep,
         * whose grace period must be longer (worker start checks it). */
        of_kafka__set_default(conf, "message.timeout.ms", "20000", errstr, sizeof errstr) != 0) {
        of_log_error("could not configure producer: %s", errstr);
        rd_kafka_conf_destroy(conf);
        return OF_ESTART;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, p);
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (p->rk == NULL) {
        of_log_error("could not create producer: %s", errstr);
        rd_kafka_conf_destroy(conf);
        return OF_ESTART;
    }
    {
        char value[32];
        size_t size = sizeof value;
        p->message_timeout_ms = rd_kafka_conf_get(rd_kafka_conf(p->rk), "message.timeout.ms", value,
                                                  &size) == RD_KAFKA_CONF_OK
                                    ? strtoll(value, NULL, 10)
                                    : 300000;
    }
    p->queue = rd_kafka_queue_get_main(p->rk);
    if (of_kafka__open_pipe(p->fds) != 0)
        return OF_ESTART;
    rd_kafka_queue_io_event_enable(p->queue, p->fds[1], "1", 1);
    if (uv_poll_init(loop, &p->poll, p->fds[0]) != 0)
        return OF_ESTART;
    p->poll.data = p;
    if (uv_timer_init(loop, &p->timer) != 0)
        return OF_ESTART;
    p->timer.data = p;
    if (uv_poll_start(&p->poll, UV_READABLE, on_producer_pipe) != 0)
        return OF_ESTART;
    return 0;
}

int of_producer_send(of_producer *p, const of_message *m, void *opaque)
{
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(m->n_headers);
    rd_kafka_resp_err_t err;
    for (size_t i = 0; i < m->n_headers; i++)
        rd_kafka_header_add(hdrs, m->headers[i].name, -1, m->headers[i].value,
                            (ssize_t)m->headers[i].len);
    err = rd_kafka_producev(
        p->rk, RD_KAFKA_V_TOPIC(m->topic), RD_KAFKA_V_KEY(m->key, m->key ? m->key_len : 0),
        RD_KAFKA_V_VALUE(m->value, m->value_len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_headers_destroy(hdrs); /* not taken over on failure */
        return err < 0 ? (int)err : -(int)err;
    }
    return 0;
}

int of_producer_outq_len(of_producer *p)
{
    return p->rk ? rd_kafka_outq_len(p->rk) : 0;
}

static void producer_handle_closed(uv_handle_t *h)
{
    of_producer *p = h->data;
    if (--p->pending_closes > 0)
        return;
    if (p->fds[0] >= 0)
        close(p->fds[0]);
    if (p->fds[1] >= 0)
        close(p->fds[1]);
    p->fds[0] = p->fds[1] = -1;
    if (p->close_cb != NULL)
        p->close_cb(p);
}

static void producer_finish_close(of_producer *p)
{
    uv_timer_stop(&p->timer);
    if (p->rk != NULL) {
        /* Whatever is left fails its delivery now, so callers see it. */
        rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(p->rk, 0);
        rd_kafka_queue_destroy(p->queue);
        p->queue = NULL;
        rd_kafka_destroy(p->rk);
        p->rk = NULL;
    }
    p->pending_closes = 2;
    uv_close((uv_handle_t *)&p->poll, producer_handle_closed);
    uv_close((uv_handle_t *)&p->timer, producer_handle_closed);
}

static void on_close_timer(uv_timer_t *t)
{
    of_producer *p = t->data;
    producer_serve(p);
    if (of_producer_outq_len(p) == 0 || uv_now(t->loop) >= p->close_deadline)
        producer_finish_close(p);
}

void of_producer_close(of_producer *p, uint64_t timeout_ms, void (*close_cb)(of_producer *p))
{
    if (p->closing)
        return;
    p->closing = true;
    p->close_cb = close_cb;
    if (p->rk == NULL || p->poll.data == NULL) {
        if (p->rk != NULL)
            rd_kafka_destroy(p->rk);
        p->rk = NULL;
        if (close_cb != NULL)
            close_cb(p);
        return;
    }
    p->close_deadline = uv_now(p->timer.loop) + timeout_ms;
    uv_timer_start(&p->timer, on_close_timer, 0, 20);
}

int of_kafka_create_topics(const char *bootstrap, const char *const *topics, size_t n,
                           int partitions, int timeout_ms, char *errstr, size_t errstr_size)
{
    rd_kafka_conf_t *conf = of_kafka_conf_new(bootstrap, "orderflow-admin", errstr, errstr_size);
    rd_kafka_t *rk = NULL;
    rd_kafka_NewTopic_t **nt = NULL;
    rd_kafka_AdminOptions_t *opts = NULL;
    rd_kafka_queue_t *q = NULL;
    rd_kafka_event_t *ev = NULL;
    int result = OF_ESTART;

    if (conf == NULL)
        return OF_ESTART;
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errstr_size);
    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
        return OF_ESTART;
    }
    nt = calloc(n ? n : 1, sizeof *nt);
    if (nt == NULL)
        goto out;
    for (size_t i = 0; i < n; i++) {
        nt[i] = rd_kafka_NewTopic_new(topics[i], partitions, -1, errstr, errstr_size);
        if (nt[i] == NULL)
            goto out;
    }
    opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_operation_timeout(opts, timeout_ms, errstr, errstr_size);
    q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, nt, n, opts, q);
    ev = rd_kafka_queue_poll(q, timeout_ms + 5000);
    if (ev == NULL) {
        snprintf(errstr, errstr_size, "timed out creating topics");
        goto out;
    }
    if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(errstr, errstr_size, "%s", rd_kafka_event_error_string(ev));
        goto out;
    }
    {
        const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
        size_t cnt = 0;
        const rd_kafka_topic_result_t **tr = rd_kafka_CreateTopics_result_topics(res, &cnt);
        for (size_t i = 0; i < cnt; i++) {
            rd_kafka_resp_err_t e = rd_kafka_topic_result_error(tr[i]);
            if (e != RD_KAFKA_RESP_ERR_NO_ERROR && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
                snprintf(errstr, errstr_size, "could not create topic \"%s\": %s",
                         rd_kafka_topic_result_name(tr[i]),
                         rd_kafka_topic_result_error_string(tr[i]));
                goto out;
            }
        }
    }
    result = 0;
out:
    if (ev != NULL)
        rd_kafka_event_destroy(ev);
    if (q != NULL)
        rd_kafka_queue_destroy(q);
    if (opts != NULL)
        rd_kafka_AdminOptions_destroy(opts);
    if (nt != NULL) {
        for (size_t i = 0; i < n; i++)
            if (nt[i] != NULL)
                rd_kafka_NewTopic_destroy(nt[i]);
        free(nt);
    }
    rd_kafka_destroy(rk);
    return result;
}
