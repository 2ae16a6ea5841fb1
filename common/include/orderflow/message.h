/* message.h: a Kafka record as orderflow hands it between modules.
 *
 * of_message is an owning record (topic, key, value, headers) used for events
 * built by orderflow (outbox rows, DLQ records). of_header_view and
 * of_record_view are non-owning views of a consumed record, so the event
 * parser and its fuzz target never depend on librdkafka types. */
#ifndef ORDERFLOW_MESSAGE_H
#define ORDERFLOW_MESSAGE_H

#include <stddef.h>
#include <stdint.h>

/* One header of a consumed record; the bytes belong to the record. */
typedef struct of_header_view {
    const char *name;  /* header name, NUL terminated */
    const void *value; /* header value bytes (not NUL terminated), may be NULL */
    size_t len;        /* value length */
} of_header_view;

/* A consumed record; every pointer belongs to the consumer's message. */
typedef struct of_record_view {
    const char *topic;             /* topic name */
    int32_t partition;             /* partition, -1 when not from Kafka */
    int64_t offset;                /* offset, -1 when not from Kafka */
    const void *key;               /* key bytes or NULL */
    size_t key_len;                /* key length */
    const void *value;             /* value bytes or NULL */
    size_t value_len;              /* value length */
    const of_header_view *headers; /* headers in record order */
    size_t n_headers;              /* number of headers */
} of_record_view;

/* One owned header: name and value are heap strings owned by the message. */
typedef struct of_header {
    char *name;  /* header name */
    char *value; /* header value (text; DLQ copies keep the original bytes) */
    size_t len;  /* value length in bytes */
} of_header;

/* An owned record to publish. of_message_free() releases every member. */
typedef struct of_message {
    char *id;           /* outbox id (= ce_id of the event, or the DLQ row's id) */
    char *topic;        /* destination topic */
    char *key;          /* partition key (the entity id), or NULL */
    size_t key_len;     /* key length */
    char *value;        /* payload bytes (NUL terminated for convenience) */
    size_t value_len;   /* payload length without the NUL */
    of_header *headers; /* owned array */
    size_t n_headers;   /* used entries */
    size_t cap_headers; /* allocated entries */
} of_message;

/* Appends a copy of (name, value[0..len)) to m. Returns 0 or OF_ENOMEM. */
int of_message_add_header(of_message *m, const char *name, const void *value, size_t len)
    __attribute__((warn_unused_result));
/* Removes (and frees) every header of m called name. */
void of_message_remove_header(of_message *m, const char *name);
/* Frees every member and zeroes m; m itself is the caller's. */
void of_message_free(of_message *m);

#endif
