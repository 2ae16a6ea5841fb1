/* kafka_internal.h: what the consumer (kafka_consumer.c) and the producer (kafka_producer.c) share;
 * not installed. */
#ifndef ORDERFLOW_KAFKA_INTERNAL_H
#define ORDERFLOW_KAFKA_INTERNAL_H

#include "orderflow/kafka.h"

int of_kafka__set_prop(rd_kafka_conf_t *conf, const char *name, const char *value, char *errstr,
                       size_t errstr_size);
int of_kafka__set_default(rd_kafka_conf_t *conf, const char *name, const char *value, char *errstr,
                          size_t errstr_size);
int of_kafka__open_pipe(int fds[2]);
void of_kafka__drain_pipe(int fd);

#endif
