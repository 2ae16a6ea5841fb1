/* cmd_topics.c: orderctl topics create, the contract's topics and their dead-letter topics. */
#include "orderctl.h"

#include "orderflow/config.h"
#include "domain/contract.h"
#include "orderflow/kafka.h"
#include "orderflow/log.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

typedef struct topics_settings {
    char *bootstrap;    /* Kafka bootstrap servers */
    char *prefix;       /* prefix for every name */
    int64_t partitions; /* partitions per topic */
    int64_t timeout;    /* ms to wait for the broker */
} topics_settings;

static const of_config_item items[] = {
    {"kafka-bootstrap-servers", "KAFKA_BOOTSTRAP_SERVERS", "kafka-bootstrap-servers", OF_CFG_STRING,
     "127.0.0.1:29092", "Kafka bootstrap servers", offsetof(topics_settings, bootstrap), 0, -1},
    {"topic-prefix", "ORDERFLOW_TOPIC_PREFIX", "topic-prefix", OF_CFG_STRING, "",
     "prefix added to every topic name", offsetof(topics_settings, prefix), 0, -1},
    {"partitions", "ORDERFLOW_PARTITIONS", "partitions", OF_CFG_INT, "6",
     "partitions per topic (the most consumers a group can use)",
     offsetof(topics_settings, partitions), 1, 1000},
    {"timeout", "ORDERFLOW_KAFKA_TIMEOUT", "timeout", OF_CFG_MS, "30s",
     "how long to wait for the broker", offsetof(topics_settings, timeout), 1000, 600000},
};
#define N_ITEMS (sizeof items / sizeof items[0])

static const char *const contract_topics[] = {
    OF_TOPIC_ORDER_CREATED,        OF_TOPIC_ORDER_STATUS,        OF_TOPIC_RETURN_REQUESTED,
    OF_TOPIC_ORDER_CREATED ".dlq", OF_TOPIC_ORDER_STATUS ".dlq", OF_TOPIC_RETURN_REQUESTED ".dlq",
};

int orderctl_topics(int argc, char **argv)
{
    topics_settings s;
    int rest = 0;
    char errstr[512];
    const char **names = NULL;
    char **owned = NULL;
    size_t n;
    int result = EX_SOFTWARE;

    of_log_set_level(OF_LOG_WARN);
    of_config_load_or_exit(items, N_ITEMS, &s, argc, argv, &rest, "orderctl topics",
                           "orderctl topics create [--partitions N] [--topic-prefix P] [TOPIC...]\n"
                           "Creates the contract's topics and their .dlq topics (or the TOPICs "
                           "given); existing topics are left as they are.");
    if (rest < 2 || strcmp(argv[1], "create") != 0) {
        fprintf(stderr, "orderctl: usage: orderctl topics create [TOPIC...]\n");
        result = EX_USAGE;
        goto out;
    }
    n = rest > 2 ? (size_t)(rest - 2) : sizeof contract_topics / sizeof contract_topics[0];
    names = calloc(n, sizeof *names);
    owned = calloc(n, sizeof *owned);
    if (names == NULL || owned == NULL)
        goto out;
    for (size_t i = 0; i < n; i++) {
        const char *base = rest > 2 ? argv[2 + i] : contract_topics[i];
        size_t len = strlen(s.prefix) + strlen(base) + 1;
        owned[i] = malloc(len);
        if (owned[i] == NULL)
            goto out;
        snprintf(owned[i], len, "%s%s", s.prefix, base);
        names[i] = owned[i];
    }
    if (of_kafka_create_topics(s.bootstrap, names, n, (int)s.partitions, (int)s.timeout, errstr,
                               sizeof errstr) != 0) {
        fprintf(stderr, "orderctl: could not create topics: %s\n", errstr);
        result = EX_UNAVAILABLE;
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        printf("topic %s ready\n", names[i]);
    result = EX_OK;
out:
    if (owned != NULL)
        for (size_t i = 0; i < n; i++)
            free(owned[i]);
    free(owned);
    free(names);
    of_config_free(items, N_ITEMS, &s);
    return result;
}
