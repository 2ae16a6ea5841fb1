/* order_bench.c: load generator that measures OrderProcess throughput and latency end to end.
 *
 * It publishes N order.created events (binary-mode CloudEvents) at a target
 * rate or as fast as the producer allows, consumes order.status, and for
 * each order records the time from the publish call to the
 * order.status.changed event carrying its final OrderProcess status
 * (CONFIRMED or REJECTED), matched by correlation_id = the order.created
 * ce_id. It prints throughput and latency percentiles as text and as one
 * JSON object. It is a client, so plain blocking polling is fine here.
 *
 * Honest figures: --warmup orders go first and are not measured; with
 * --rate the publisher holds the offered rate by sleeping in the consumer
 * poll until the next send is due (no busy loop) and reports the rate it
 * achieved beside it; ce_time has millisecond resolution. --echo measures
 * the floor of the pipeline instead: each record crosses three Kafka hops
 * (produce, consume, produce again) with the same producer settings as the
 * workers, and nothing else. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Settings of the producer, the same as the workers' defaults (common/src/kafka_producer.c);
 * --linger-ms changes linger.ms. */
static int producer_conf(rd_kafka_conf_t *pc, const char *bootstrap, const char *linger,
                         char *errstr, size_t size)
{
    return rd_kafka_conf_set(pc, "bootstrap.servers", bootstrap, errstr, size) ||
           rd_kafka_conf_set(pc, "enable.idempotence", "true", errstr, size) ||
           rd_kafka_conf_set(pc, "acks", "all", errstr, size) ||
           rd_kafka_conf_set(pc, "linger.ms", linger, errstr, size);
}

typedef struct bench_order {
    int64_t sent_ns; /* monotonic time of the publish call */
    int64_t done_ns; /* when its final status arrived, 0 until then */
    int confirmed;   /* 1 CONFIRMED, 0 REJECTED */
} bench_order;

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(const int64_t *sorted, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
    return (double)sorted[i] / 1e6;
}

static void usage(void)
{
    fprintf(
        stderr,
        "usage: order-bench [--bootstrap HOST:PORT] [--count N] [--rate PER_S] [--items K<=10]\n"
        "                   [--duration S] [--warmup N] [--customer ID] [--product ID]\n"
        "                   [--topic-prefix P] [--timeout S] [--json FILE] [--echo]\n"
        "                   [--linger-ms MS]\n"
        "Publishes N order.created events (after --warmup unmeasured ones) and waits for\n"
        "each order's final status on order.status. --rate 0 (default) publishes as fast\n"
        "as possible; with --rate R, --duration S measures R*S orders. --echo measures\n"
        "three Kafka hops on the topics <prefix>bench.echo.1..3 instead. --linger-ms\n"
        "(default 0, as the workers) is the linger.ms of every record it produces.\n");
}

/* Assigns every partition of the given topics at its current high watermark. */
static int echo_assign(rd_kafka_t *rk, const char *t1, const char *t2, const char *t3)
{
    const char *topics[3] = {t1, t2, t3};
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(8);
    for (int i = 0; i < 3; i++) {
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topics[i], NULL);
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t err =
            rkt ? rd_kafka_metadata(rk, 0, rkt, &md, 10000) : RD_KAFKA_RESP_ERR__INVALID_ARG;
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR || md->topic_cnt != 1 ||
            md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(stderr, "order-bench: no metadata for %s: %s\n", topics[i],
                    rd_kafka_err2str(err ? err : md->topics[0].err));
            if (md)
                rd_kafka_metadata_destroy(md);
            if (rkt)
                rd_kafka_topic_destroy(rkt);
            rd_kafka_topic_partition_list_destroy(list);
            return -1;
        }
        for (int p = 0; p < md->topics[0].partition_cnt; p++) {
            int32_t part = md->topics[0].partitions[p].id;
            int64_t lo = 0, hi = 0;
            err = rd_kafka_query_watermark_offsets(rk, topics[i], part, &lo, &hi, 10000);
            if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
                fprintf(stderr, "order-bench: no watermark for %s [%d]: %s\n", topics[i], (int)part,
                        rd_kafka_err2str(err));
                rd_kafka_metadata_destroy(md);
                rd_kafka_topic_destroy(rkt);
                rd_kafka_topic_partition_list_destroy(list);
                return -1;
            }
            rd_kafka_topic_partition_list_add(list, topics[i], part)->offset = hi;
        }
        rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);
    }
    rd_kafka_resp_err_t err = rd_kafka_assign(rk, list);
    rd_kafka_topic_partition_list_destroy(list);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "order-bench: assign: %s\n", rd_kafka_err2str(err));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *bootstrap = getenv("KAFKA_BOOTSTRAP_SERVERS");
    const char *customer = "c-bench", *product = "p-bench", *prefix = "", *json_path = NULL;
    long count = 1000, rate = 0, items = 1, timeout_s = 300, warmup = 0, duration = 0;
    int echo = 0;
    const char *linger = "0";
    char errstr[512], topic_in[256], topic_out[256], group[64], run[32];
    static const struct option opts[] = {{"bootstrap", required_argument, NULL, 'b'},
                                         {"count", required_argument, NULL, 'n'},
                                         {"rate", required_argument, NULL, 'r'},
                                         {"items", required_argument, NULL, 'i'},
                                         {"customer", required_argument, NULL, 'c'},
                                         {"product", required_argument, NULL, 'p'},
                                         {"topic-prefix", required_argument, NULL, 'x'},
                                         {"timeout", required_argument, NULL, 't'},
                                         {"json", required_argument, NULL, 'j'},
                                         {"warmup", required_argument, NULL, 'w'},
                                         {"duration", required_argument, NULL, 'd'},
                                         {"echo", no_argument, NULL, 'e'},
                                         {"linger-ms", required_argument, NULL, 'l'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'b':
            bootstrap = optarg;
            break;
        case 'n':
            count = strtol(optarg, NULL, 10);
            break;
        case 'r':
            rate = strtol(optarg, NULL, 10);
            break;
        case 'i':
            items = strtol(optarg, NULL, 10);
            break;
        case 'c':
            customer = optarg;
            break;
        case 'p':
            product = optarg;
            break;
        case 'x':
            prefix = optarg;
            break;
        case 't':
            timeout_s = strtol(optarg, NULL, 10);
            break;
        case 'j':
            json_path = optarg;
            break;
        case 'w':
            warmup = strtol(optarg, NULL, 10);
            break;
        case 'd':
            duration = strtol(optarg, NULL, 10);
            break;
        case 'e':
            echo = 1;
            break;
        case 'l':
            linger = optarg;
            break;
        default:
            usage();
            return c == 'h' ? 0 : 64;
        }
    }
    if (bootstrap == NULL)
        bootstrap = "127.0.0.1:29092";
    if (rate > 0 && duration > 0)
        count = rate * duration;
    if (count < 1 || count > 10000000 || rate < 0 || items < 1 || items > 10 || warmup < 0 ||
        warmup > 1000000 || duration < 0) {
        usage();
        return 64;
    }
    signal(SIGINT, on_signal);
    snprintf(topic_in, sizeof topic_in, "%s%s", prefix, echo ? "bench.echo.1" : "order.created");
    snprintf(topic_out, sizeof topic_out, "%s%s", prefix, echo ? "bench.echo.3" : "order.status");
    snprintf(run, sizeof run, "b%ld", (long)time(NULL));
    snprintf(group, sizeof group, "order-bench-%s-%d", run, (int)getpid());

    long total = warmup + count; /* orders [0, warmup) are not measured */
    bench_order *orders = calloc((size_t)total, sizeof *orders);
    if (orders == NULL)
        return 71;

    /* The consumer is assigned and positioned at the end before anything is
     * published, so every answer is seen. */
    rd_kafka_conf_t *cc = rd_kafka_conf_new();
    if (rd_kafka_conf_set(cc, "bootstrap.servers", bootstrap, errstr, sizeof errstr) ||
        rd_kafka_conf_set(cc, "group.id", group, errstr, sizeof errstr) ||
        rd_kafka_conf_set(cc, "auto.offset.reset", "latest", errstr, sizeof errstr) ||
        rd_kafka_conf_set(cc, "enable.auto.commit", "false", errstr, sizeof errstr) ||
        rd_kafka_conf_set(cc, "fetch.wait.max.ms", "10", errstr, sizeof errstr)) {
        fprintf(stderr, "order-bench: %s\n", errstr);
        return 78;
    }
    rd_kafka_t *consumer = rd_kafka_new(RD_KAFKA_CONSUMER, cc, errstr, sizeof errstr);
    if (consumer == NULL) {
        fprintf(stderr, "order-bench: could not create consumer: %s\n", errstr);
        return 69;
    }
    rd_kafka_poll_set_consumer(consumer);
    char topic_mid[256];
    snprintf(topic_mid, sizeof topic_mid, "%sbench.echo.2", prefix);
    if (echo) {
        /* The echo consumes hops 1 and 2 to forward them, and hop 3 to time them. Every
         * partition is assigned at its high watermark, resolved before anything is
         * produced: no record of this run is skipped, none of an earlier run read. */
        if (echo_assign(consumer, topic_in, topic_mid, topic_out) != 0)
            return 69;
    } else {
        rd_kafka_topic_partition_list_t *subs = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(subs, topic_out, RD_KAFKA_PARTITION_UA);
        rd_kafka_subscribe(consumer, subs);
        rd_kafka_topic_partition_list_destroy(subs);
        for (int i = 0; i < 300 && !stop; i++) {
            rd_kafka_topic_partition_list_t *a = NULL;
            rd_kafka_message_t *m = rd_kafka_consumer_poll(consumer, 100);
            if (m != NULL)
                rd_kafka_message_destroy(m);
            if (rd_kafka_assignment(consumer, &a) == RD_KAFKA_RESP_ERR_NO_ERROR && a->cnt > 0) {
                rd_kafka_topic_partition_list_destroy(a);
                break;
            }
            if (a != NULL)
                rd_kafka_topic_partition_list_destroy(a);
        }
    }

    rd_kafka_conf_t *pc = rd_kafka_conf_new();
    if (producer_conf(pc, bootstrap, linger, errstr, sizeof errstr)) {
        fprintf(stderr, "order-bench: %s\n", errstr);
        return 78;
    }
    rd_kafka_t *producer = rd_kafka_new(RD_KAFKA_PRODUCER, pc, errstr, sizeof errstr);
    if (producer == NULL) {
        fprintf(stderr, "order-bench: could not create producer: %s\n", errstr);
        return 69;
    }

    /* The producer learns its topics before the clock starts: the first send to a
     * topic it does not know waits for a metadata round trip. */
    const char *ptopics[3] = {topic_in, topic_mid, topic_out};
    rd_kafka_topic_t *prkt[3] = {NULL, NULL, NULL};
    for (int i = 0; i < (echo ? 3 : 1); i++) {
        const struct rd_kafka_metadata *md = NULL;
        prkt[i] = rd_kafka_topic_new(producer, ptopics[i], NULL);
        if (prkt[i] != NULL &&
            rd_kafka_metadata(producer, 0, prkt[i], &md, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR)
            rd_kafka_metadata_destroy(md);
    }

    /* One value serves every order: the events differ only in ce_id and key. */
    char value[8192];
    size_t vlen =
        (size_t)snprintf(value, sizeof value, "{\"customer_id\":\"%s\",\"items\":[", customer);
    for (long k = 0; k < items; k++) {
        /* Line k names "<product>" or "<product>-<k>" (bench/run seeds 10 of them). */
        char pid[96];
        if (k == 0)
            snprintf(pid, sizeof pid, "%s", product);
        else
            snprintf(pid, sizeof pid, "%s-%ld", product, k);
        vlen += (size_t)snprintf(value + vlen, sizeof value - vlen,
                                 "%s{\"product_id\":\"%s\",\"quantity\":1}", k ? "," : "", pid);
    }
    vlen += (size_t)snprintf(value + vlen, sizeof value - vlen, "]}");

    int64_t start = now_ns(), measure_start = 0;
    long sent = 0, done = 0, confirmed = 0, measured_done = 0;
    int64_t deadline = start + (int64_t)timeout_s * 1000000000LL;
    while (!stop && done < total && now_ns() < deadline) {
        /* Publish what the rate allows so far (the warm-up at the same rate). */
        int wait_ms = sent < total ? 0 : 50;
        while (sent < total) {
            if (rate > 0) {
                int64_t due = start + sent * 1000000000LL / rate;
                int64_t now = now_ns();
                if (now < due) {
                    /* Rounded up: a zero timeout would spin until the send is due. */
                    wait_ms = (int)((due - now + 999999) / 1000000);
                    break;
                }
            }
            char id[64], ts[40], ms[24];
            struct timespec wall;
            struct tm tm;
            clock_gettime(CLOCK_REALTIME, &wall);
            gmtime_r(&wall.tv_sec, &tm);
            strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
            snprintf(ms, sizeof ms, ".%03ldZ", wall.tv_nsec / 1000000);
            strncat(ts, ms, sizeof ts - strlen(ts) - 1);
            snprintf(id, sizeof id, "%s-%ld", run, sent);
            rd_kafka_headers_t *h = rd_kafka_headers_new(6);
            rd_kafka_header_add(h, "ce_specversion", -1, "1.0", -1);
            rd_kafka_header_add(h, "ce_id", -1, id, -1);
            rd_kafka_header_add(h, "ce_type", -1, "order.created", -1);
            rd_kafka_header_add(h, "ce_source", -1, "bench/order-bench", -1);
            rd_kafka_header_add(h, "ce_time", -1, ts, -1);
            rd_kafka_header_add(h, "content-type", -1, "application/json", -1);
            if (sent == warmup)
                measure_start = now_ns();
            orders[sent].sent_ns = now_ns();
            rd_kafka_resp_err_t err = rd_kafka_producev(
                producer, RD_KAFKA_V_TOPIC(topic_in), RD_KAFKA_V_KEY(id, strlen(id)),
                RD_KAFKA_V_VALUE(echo ? id : value, echo ? strlen(id) : vlen),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
            if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                rd_kafka_headers_destroy(h);
                wait_ms = 1;
                break;
            }
            if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
                fprintf(stderr, "order-bench: could not publish: %s\n", rd_kafka_err2str(err));
                rd_kafka_headers_destroy(h);
                return 69;
            }
            sent++;
        }
        rd_kafka_poll(producer, 0);
        /* Sleeps in the poll until a record comes or the next send is due. */
        rd_kafka_message_t *m = rd_kafka_consumer_poll(consumer, wait_ms);
        if (m == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR && m->payload != NULL && echo) {
            const char *t = rd_kafka_topic_name(m->rkt);
            const char *next = strcmp(t, topic_in) == 0    ? topic_mid
                               : strcmp(t, topic_mid) == 0 ? topic_out
                                                           : NULL;
            size_t rl0 = strlen(run);
            bool ours = m->len > rl0 && strncmp(m->payload, run, rl0) == 0;
            if (!ours) {
                /* a record of an earlier run */
            } else if (next != NULL) {
                /* Forward the record to the next hop, as a worker would. */
                rd_kafka_producev(producer, RD_KAFKA_V_TOPIC(next),
                                  RD_KAFKA_V_KEY(m->key, m->key_len),
                                  RD_KAFKA_V_VALUE(m->payload, m->len),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
            } else {
                size_t rl = strlen(run);
                if (m->len > rl + 1 && strncmp(m->payload, run, rl) == 0) {
                    char idx[24];
                    size_t k = m->len - rl - 1 < sizeof idx - 1 ? m->len - rl - 1 : sizeof idx - 1;
                    memcpy(idx, (const char *)m->payload + rl + 1, k);
                    idx[k] = '\0';
                    long i = strtol(idx, NULL, 10);
                    if (i >= 0 && i < total && orders[i].done_ns == 0) {
                        orders[i].done_ns = now_ns();
                        orders[i].confirmed = 1;
                        confirmed += i >= warmup;
                        measured_done += i >= warmup;
                        done++;
                    }
                }
            }
        } else if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR && m->payload != NULL) {
            cJSON *d = cJSON_ParseWithLength(m->payload, m->len);
            const cJSON *st = cJSON_GetObjectItemCaseSensitive(d, "status");
            const cJSON *corr = cJSON_GetObjectItemCaseSensitive(d, "correlation_id");
            size_t rl = strlen(run);
            if (cJSON_IsString(st) && cJSON_IsString(corr) &&
                strncmp(corr->valuestring, run, rl) == 0 && corr->valuestring[rl] == '-' &&
                (strcmp(st->valuestring, "CONFIRMED") == 0 ||
                 strcmp(st->valuestring, "REJECTED") == 0)) {
                long i = strtol(corr->valuestring + rl + 1, NULL, 10);
                if (i >= 0 && i < total && orders[i].done_ns == 0) {
                    orders[i].done_ns = now_ns();
                    orders[i].confirmed = strcmp(st->valuestring, "CONFIRMED") == 0;
                    if (i >= warmup) {
                        confirmed += orders[i].confirmed;
                        measured_done++;
                    }
                    done++;
                }
            }
            cJSON_Delete(d);
        }
        rd_kafka_message_destroy(m);
    }
    int64_t end = now_ns();

    int64_t *lat = calloc((size_t)(measured_done ? measured_done : 1), sizeof *lat);
    size_t n = 0;
    int64_t last = measure_start, last_sent = measure_start;
    for (long i = warmup; i < total && lat != NULL; i++) {
        if (orders[i].sent_ns > last_sent)
            last_sent = orders[i].sent_ns;
        if (orders[i].done_ns == 0)
            continue;
        lat[n++] = orders[i].done_ns - orders[i].sent_ns;
        if (orders[i].done_ns > last)
            last = orders[i].done_ns;
    }
    qsort(lat, n, sizeof *lat, cmp_i64);
    double secs = (double)(last - measure_start) / 1e9;
    double tput = secs > 0 ? (double)n / secs : 0;
    double send_secs = (double)(last_sent - measure_start) / 1e9;
    double offered = send_secs > 0 ? (double)(count - 1) / send_secs : 0;
    long missing = count - measured_done;
    printf("%s      %ld measured (after %ld warm-up), %ld final (%ld CONFIRMED, %ld REJECTED), "
           "%ld missing\n",
           echo ? "echo  " : "orders", count, warmup, measured_done, confirmed,
           measured_done - confirmed, missing);
    printf("throughput  %.1f /s achieved (first measured publish to last final status: %.2f s); "
           "offered %.1f /s%s\n",
           tput, secs, offered, rate > 0 ? "" : " (burst)");
    printf("latency ms  p50 %.1f  p95 %.1f  p99 %.1f  max %.1f  (publish -> %s)\n", pct(lat, n, 50),
           pct(lat, n, 95), pct(lat, n, 99), pct(lat, n, 100),
           echo ? "third hop consumed" : "final status event");
    char jsonbuf[768];
    snprintf(jsonbuf, sizeof jsonbuf,
             "{\"mode\":\"%s\",\"orders\":%ld,\"warmup\":%ld,\"final\":%ld,\"confirmed\":%ld,"
             "\"rejected\":%ld,\"missing\":%ld,\"rate_target\":%ld,\"rate_offered\":%.1f,"
             "\"items_per_order\":%ld,\"seconds\":%.3f,\"orders_per_second\":%.1f,"
             "\"latency_ms\":{\"p50\":%.2f,\"p95\":%.2f,\"p99\":%.2f,\"max\":%.2f}}",
             echo ? "echo" : "orders", count, warmup, measured_done, confirmed,
             measured_done - confirmed, missing, rate, offered, items, secs, tput, pct(lat, n, 50),
             pct(lat, n, 95), pct(lat, n, 99), pct(lat, n, 100));
    printf("%s\n", jsonbuf);
    if (json_path != NULL) {
        FILE *f = fopen(json_path, "w");
        if (f != NULL) {
            fprintf(f, "%s\n", jsonbuf);
            fclose(f);
        }
    }
    (void)end;
    free(lat);
    free(orders);
    rd_kafka_flush(producer, 5000);
    for (int i = 0; i < 3; i++)
        if (prkt[i] != NULL)
            rd_kafka_topic_destroy(prkt[i]);
    rd_kafka_destroy(producer);
    rd_kafka_consumer_close(consumer);
    rd_kafka_destroy(consumer);
    return measured_done == count ? 0 : 1;
}
