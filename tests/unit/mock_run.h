/* mock_run.h: a run against librdkafka's mock cluster, shared by the Kafka
 * unit tests (test_kafka.c: produce and consume; test_kafka_group.c: the
 * consumer group's scenarios). Not a test itself. */
#ifndef ORDERFLOW_TEST_MOCK_RUN_H
#define ORDERFLOW_TEST_MOCK_RUN_H

#include <stdbool.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <uv.h>

#include "orderflow/kafka.h"

#define N_MSGS        200
#define N_KEYS        10
#define N_PARTS       3
#define N_BROKERS     3
#define DEADLINE_MS   25000
#define API_PRODUCE   0 /* Kafka protocol ApiKey of ProduceRequest */
#define CLOSE_WAIT_MS 5000
#define WAVE          10 /* messages sent per tick */
#define WAVE_MS       5  /* time between ticks */

/* Everything one run shares: the mock cluster, the loop, the clients under
 * test and what the callbacks observed. */
typedef struct run {
    rd_kafka_t *mock_rk;               /* helper handle that owns the mock cluster */
    rd_kafka_mock_cluster_t *mcluster; /* the mock cluster */
    char bootstraps[256];              /* its bootstrap.servers */
    char topic[64];                    /* topic of this run */
    char group[64];                    /* consumer group of this run */
    uv_loop_t loop;                    /* the loop driving both clients */
    uv_timer_t deadline;               /* gives up when the run hangs */
    bool timed_out;                    /* the deadline fired */
    bool closing;                      /* close of the clients started */
    uv_timer_t sender;                 /* sends the messages in waves */
    int sent;                          /* messages handed to the producer */
    int send_errors;                   /* of_producer_send failures */
    of_producer prod;                  /* producer under test */
    of_consumer cons;                  /* consumer under test */
    bool prod_closed;                  /* producer close callback ran */
    bool cons_closed;                  /* consumer close callback ran */
    int delivered;                     /* delivery reports */
    int dr_errors;                     /* delivery reports with an error */
    int dr_bad_opaque;                 /* delivery reports with an unknown opaque */
    int dr_seen[N_MSGS];               /* delivery reports per message */
    int received;                      /* messages consumed */
    int seen[N_MSGS];                  /* times each message was consumed */
    int bad;                           /* consumed messages failing a check */
    char first_bad[256];               /* why the first bad message was bad */
    int last_seq[N_KEYS];              /* last sequence consumed per key */
    int32_t key_partition[N_KEYS];     /* partition each key was seen on */
    int64_t last_offset[N_PARTS];      /* last offset consumed per partition */
    int per_partition[N_PARTS];        /* messages consumed per partition */
    int store_errors;                  /* of_consumer_store failures */
    int wakeups;                       /* wakeup callbacks */
    int assigned;                      /* partitions reported assigned */
    int revoked;                       /* partitions reported revoked */
} run;

/* The message with sequence i: key, value and three headers (text, binary
 * with NULs and 0xff, empty). */
void make_message(of_message *m, run *r, int i);
/* A mock cluster of N_BROKERS brokers and one topic of N_PARTS partitions,
 * partition p led by broker p + 1; a loop with the deadline and sender
 * timers initialised. name makes the topic and group unique. */
run *run_new(const char *name);
/* The producer's close callback: sets prod_closed (its arg is the run). */
void on_prod_closed(of_producer *p);
/* Sends the next WAVE of the N_MSGS messages (a repeating timer whose data
 * is the run; closes itself after the last): spreading the sends over time
 * gives each partition several produce requests, some in flight together. */
void on_send_wave(uv_timer_t *t);
/* Destroys the mock cluster and r; asserts every rd_kafka_t is gone. */
void run_free(run *r);

#endif
