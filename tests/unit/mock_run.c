/* mock_run.c: the mock-cluster run the Kafka unit tests share (mock_run.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mock_run.h"

void make_message(of_message *m, run *r, int i)
{
    char key[32], value[32], ce_id[32];
    const char bin[4] = {'\0', (char)0xff, (char)i, '\0'};
    snprintf(key, sizeof key, "order-%d", i % N_KEYS);
    snprintf(value, sizeof value, "msg-%d", i);
    snprintf(ce_id, sizeof ce_id, "evt-%d", i);
    memset(m, 0, sizeof *m);
    m->topic = strdup(r->topic);
    m->key = strdup(key);
    m->key_len = strlen(key);
    m->value = strdup(value);
    m->value_len = strlen(value);
    assert_non_null(m->topic);
    assert_non_null(m->key);
    assert_non_null(m->value);
    assert_int_equal(of_message_add_header(m, "ce_id", ce_id, strlen(ce_id)), 0);
    assert_int_equal(of_message_add_header(m, "bin", bin, sizeof bin), 0);
    assert_int_equal(of_message_add_header(m, "empty", "", 0), 0);
}

run *run_new(const char *name)
{
    char errstr[512];
    run *r = calloc(1, sizeof *r);
    assert_non_null(r);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    assert_int_equal(rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof errstr),
                     RD_KAFKA_CONF_OK);
    r->mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (r->mock_rk == NULL)
        fail_msg("could not create mock handle: %s", errstr);
    r->mcluster = rd_kafka_mock_cluster_new(r->mock_rk, N_BROKERS);
    assert_non_null(r->mcluster);
    snprintf(r->bootstraps, sizeof r->bootstraps, "%s",
             rd_kafka_mock_cluster_bootstraps(r->mcluster));
    snprintf(r->topic, sizeof r->topic, "test.%s", name);
    snprintf(r->group, sizeof r->group, "group-%s", name);
    assert_int_equal(rd_kafka_mock_topic_create(r->mcluster, r->topic, N_PARTS, 1),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    for (int p = 0; p < N_PARTS; p++)
        assert_int_equal(rd_kafka_mock_partition_set_leader(r->mcluster, r->topic, p, p + 1),
                         RD_KAFKA_RESP_ERR_NO_ERROR);
    for (int k = 0; k < N_KEYS; k++) {
        r->last_seq[k] = -1;
        r->key_partition[k] = -1;
    }
    for (int p = 0; p < N_PARTS; p++)
        r->last_offset[p] = -1;
    assert_int_equal(uv_loop_init(&r->loop), 0);
    assert_int_equal(uv_timer_init(&r->loop, &r->deadline), 0);
    r->deadline.data = r;
    assert_int_equal(uv_timer_init(&r->loop, &r->sender), 0);
    r->sender.data = r;
    return r;
}

void run_free(run *r)
{
    rd_kafka_mock_cluster_destroy(r->mcluster);
    rd_kafka_destroy(r->mock_rk);
    free(r);
    /* Every rd_kafka_t (clients under test, helpers) is really gone. */
    assert_int_equal(rd_kafka_wait_destroyed(5000), 0);
}

void on_prod_closed(of_producer *p)
{
    run *r = p->arg;
    r->prod_closed = true;
}

void on_send_wave(uv_timer_t *t)
{
    run *r = t->data;
    for (int w = 0; w < WAVE && r->sent < N_MSGS; w++, r->sent++) {
        of_message m;
        make_message(&m, r, r->sent);
        if (of_producer_send(&r->prod, &m, (void *)(uintptr_t)(r->sent + 1)) != 0)
            r->send_errors++;
        /* The producer copied everything. */
        of_message_free(&m);
    }
    if (r->sent == N_MSGS)
        uv_close((uv_handle_t *)t, NULL);
}
