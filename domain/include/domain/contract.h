/* contract.h: the typed data of the contract's event types (contract section 3).
 *
 * Topic and type names, the order and return statuses, and one decoder per
 * event type that turns an event's data object (of_event.data) into a plain
 * struct, checking every field against the contract's limits. Errors use
 * of_event_error from event.h; reasons name the field by a JSON path, e.g.
 *   field "items[3].quantity" must be an integer from 1 to 10000
 *
 * Rules common to every decoder:
 *   - unknown fields are ignored; a field the decoder reads may appear only
 *     once in its object (else MALFORMED_JSON);
 *   - an optional field that is null counts as absent;
 *   - integers: JSON has only numbers, so 3, 3.0 and 3e0 are the integer 3;
 *     a number with a fraction (2.5) or a string ("3") is WRONG_TYPE, an
 *     integer outside its range (0, -1, 1e9) is OUT_OF_RANGE; the reason is
 *     the same range sentence in all cases;
 *   - ids (customer_id, product_id, correlation_id) follow the id rules:
 *     1..64 characters of [A-Za-z0-9._:-] (INVALID_ID);
 *   - UUIDs (order_id, return_id) must be canonical 8-4-4-4-12 hex; they are
 *     stored lowercased, so one order always has one spelling (one Kafka key,
 *     one primary key text);
 *   - reason strings are valid UTF-8 of at most OF_REASON_MAX characters;
 *   - items: 1..OF_ITEMS_MAX entries (0 is OUT_OF_RANGE, more is
 *     TOO_MANY_ITEMS). Lines naming the same product_id are merged into the
 *     first line of that product, their quantities summed; the sum must still
 *     be at most OF_QUANTITY_MAX (OUT_OF_RANGE), so a product is never
 *     ordered or returned more than 10000 times in one event. The order of
 *     first appearance is kept.
 *
 * Ownership: every struct here is plain memory owned by the caller (fixed
 * arrays, no heap; of_order_created is about 7 KiB). Decoders only read the
 * cJSON tree and never keep pointers into it. Encoders return a new cJSON
 * object that the caller releases with cJSON_Delete(). */
#ifndef ORDERFLOW_CONTRACT_H
#define ORDERFLOW_CONTRACT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "orderflow/error.h"
#include "orderflow/event.h"
#include "orderflow/uuid.h"

/* Topics. */
#define OF_TOPIC_ORDER_CREATED    "order.created"
#define OF_TOPIC_ORDER_STATUS     "order.status"
#define OF_TOPIC_RETURN_REQUESTED "return.requested"

/* Event types (ce_type). */
#define OF_TYPE_ORDER_CREATED         "order.created"
#define OF_TYPE_ORDER_STATUS_CHANGED  "order.status.changed"
#define OF_TYPE_ORDER_STATUS_UPDATE   "order.status.update"
#define OF_TYPE_RETURN_REQUESTED      "return.requested"
#define OF_TYPE_RETURN_STATUS_CHANGED "return.status.changed"
/* An extension of the contract (docs/events.md): a deadline of an order
 * passed. Published by orderflow itself on order.status when the deadline
 * timer fires, so that the timeout is applied like any other event. */
#define OF_TYPE_ORDER_DEADLINE_EXPIRED "order.deadline.expired"

/* Limits (contract section 2). */
#define OF_ITEMS_MAX        100
#define OF_QUANTITY_MAX     10000
#define OF_REASON_MAX       256 /* characters (code points) in a reason */
#define OF_REASON_BUFSIZE   (OF_REASON_MAX * 4 + 1)
#define OF_CURRENCY_DEFAULT "USD"
/* Versions are PostgreSQL integers. */
#define OF_VERSION_MAX INT32_MAX
/* Money in cents, at most 10^15 - 1: cJSON 1.7.15 prints larger integers
 * with 15 significant digits, which would change the amount. */
#define OF_CENTS_MAX INT64_C(999999999999999)

/* Order statuses (orders.status). OF_ORDER_NONE stands for "no status", the
 * null previous_status of a newly created order. */
typedef enum of_order_status {
    OF_ORDER_NONE = 0,
    OF_ORDER_CREATED,
    OF_ORDER_INVENTORY_RESERVED,
    OF_ORDER_CONFIRMED,
    OF_ORDER_REJECTED,
    OF_ORDER_PAID,
    OF_ORDER_SHIPPED,
    OF_ORDER_DELIVERED,
    OF_ORDER_CANCELLED,
    OF_ORDER_RETURNED,
    OF_ORDER_PARTIALLY_RETURNED,
    OF_ORDER_STATUS_COUNT, /* not a status: how many there are, NONE included */
} of_order_status;

/* Return statuses (returns.status); OF_RETURN_NONE is "no status". */
typedef enum of_return_status {
    OF_RETURN_NONE = 0,
    OF_RETURN_INITIATED,
    OF_RETURN_REJECTED,
    OF_RETURN_RETURN_PROCESSED,
    OF_RETURN_REFUND_INITIATED,
    OF_RETURN_REFUND_PROCESSED,
    OF_RETURN_REFUND_COMPLETED,
    OF_RETURN_STATUS_COUNT, /* not a status: how many there are, NONE included */
} of_return_status;

/* The status names, indexed by status; [NONE] is "". The order and return
 * machines use them as their state names. */
extern const char *const of_order_status_names[OF_ORDER_STATUS_COUNT];
extern const char *const of_return_status_names[OF_RETURN_STATUS_COUNT];

/* "PAID" etc.; NULL for OF_ORDER_NONE and values outside the enum. */
const char *of_order_status_name(of_order_status status);
/* Parses an exact (case-sensitive) status name. Returns 0 or OF_EINVAL. */
int of_order_status_parse(const char *name, of_order_status *out)
    __attribute__((warn_unused_result));
/* True for the statuses an upstream order.status.update may carry: PAID,
 * SHIPPED, DELIVERED, CANCELLED, RETURNED, PARTIALLY_RETURNED. */
bool of_order_status_is_update(of_order_status status);

/* "INITIATED" etc.; NULL for OF_RETURN_NONE and values outside the enum. */
const char *of_return_status_name(of_return_status status);
/* Parses an exact (case-sensitive) status name. Returns 0 or OF_EINVAL. */
int of_return_status_parse(const char *name, of_return_status *out)
    __attribute__((warn_unused_result));

/* One line of an order or a return. */
typedef struct of_item {
    char product_id[OF_EVENT_ID_MAX + 1]; /* product id, id rules */
    int32_t quantity;                     /* 1..OF_QUANTITY_MAX (after merging) */
} of_item;

/* order.created data. */
typedef struct of_order_created {
    char customer_id[OF_EVENT_ID_MAX + 1]; /* customer id, id rules */
    char currency[4];                      /* three uppercase letters, default "USD" */
    size_t n_items;                        /* 1..OF_ITEMS_MAX lines after merging */
    of_item items[OF_ITEMS_MAX];           /* distinct products, first appearance order */
} of_order_created;

/* order.status.update data: a request to move an order to status. */
typedef struct of_order_status_update {
    char order_id[OF_UUID_STRLEN + 1]; /* order, lowercase UUID */
    of_order_status status;            /* one of of_order_status_is_update() */
    bool has_reason;                   /* reason was given */
    char reason[OF_REASON_BUFSIZE];    /* free text, or "" */
    bool has_expected_version;         /* expected_version was given */
    int32_t expected_version;          /* apply only at this order version (>= 1) */
} of_order_status_update;

/* order.status.changed data: an order moved from previous_status to status. */
typedef struct of_order_status_changed {
    char order_id[OF_UUID_STRLEN + 1];        /* order, lowercase UUID */
    of_order_status status;                   /* new status (any but NONE) */
    of_order_status previous_status;          /* old status, OF_ORDER_NONE for null */
    int32_t version;                          /* order version after the transition, >= 1 */
    bool has_reason;                          /* reason was given */
    char reason[OF_REASON_BUFSIZE];           /* e.g. "OUT_OF_STOCK", or "" */
    char correlation_id[OF_EVENT_ID_MAX + 1]; /* ce_id of the event that started the chain */
    char at[OF_EVENT_TIME_MAX + 1];           /* when, RFC 3339 */
} of_order_status_changed;

/* order.deadline.expired data (an extension, see OF_TYPE_ORDER_DEADLINE_EXPIRED). */
typedef struct of_order_deadline_expired {
    char order_id[OF_UUID_STRLEN + 1];  /* order, lowercase UUID */
    char kind[16];                      /* which deadline: "PAYMENT" */
    char due_at[OF_EVENT_TIME_MAX + 1]; /* when it was due, RFC 3339 */
} of_order_deadline_expired;

/* return.requested data. */
typedef struct of_return_requested {
    char order_id[OF_UUID_STRLEN + 1]; /* order, lowercase UUID */
    bool has_reason;                   /* reason was given */
    char reason[OF_REASON_BUFSIZE];    /* free text, or "" */
    size_t n_items;                    /* 1..OF_ITEMS_MAX lines after merging */
    of_item items[OF_ITEMS_MAX];       /* distinct products, first appearance order */
} of_return_requested;

/* return.status.changed data. */
typedef struct of_return_status_changed {
    char return_id[OF_UUID_STRLEN + 1];       /* return, lowercase UUID */
    char order_id[OF_UUID_STRLEN + 1];        /* its order, lowercase UUID */
    of_return_status status;                  /* new status (any but NONE) */
    of_return_status previous_status;         /* old status, OF_RETURN_NONE for null */
    int32_t version;                          /* return version after the transition, >= 1 */
    bool has_reason;                          /* reason was given */
    char reason[OF_REASON_BUFSIZE];           /* e.g. "RETURN_WINDOW_EXPIRED", or "" */
    bool has_refund_cents;                    /* refund_cents was given */
    int64_t refund_cents;                     /* 0..OF_CENTS_MAX */
    char correlation_id[OF_EVENT_ID_MAX + 1]; /* ce_id of the event that started the chain */
    char at[OF_EVENT_TIME_MAX + 1];           /* when, RFC 3339 */
} of_return_status_changed;

/* Decoders: data is the event's data object (only read). Each fills *out and
 * returns 0, or returns a negative of_event_code with err (may be NULL)
 * filled; *out is then unspecified. Codes: DATA_NOT_OBJECT, MALFORMED_JSON
 * (duplicate field), MISSING_FIELD, WRONG_TYPE, OUT_OF_RANGE, INVALID_ID,
 * TOO_MANY_ITEMS, INVALID_STATUS, INVALID_TIME. */
int of_order_created_decode(const cJSON *data, of_order_created *out, of_event_error *err)
    __attribute__((warn_unused_result));
int of_order_status_update_decode(const cJSON *data, of_order_status_update *out,
                                  of_event_error *err) __attribute__((warn_unused_result));
/* previous_status must be present (null or a status); status may not be null. */
int of_order_status_changed_decode(const cJSON *data, of_order_status_changed *out,
                                   of_event_error *err) __attribute__((warn_unused_result));
int of_order_deadline_expired_decode(const cJSON *data, of_order_deadline_expired *out,
                                     of_event_error *err) __attribute__((warn_unused_result));
int of_return_requested_decode(const cJSON *data, of_return_requested *out, of_event_error *err)
    __attribute__((warn_unused_result));
/* previous_status must be present (null or a status); status may not be null. */
int of_return_status_changed_decode(const cJSON *data, of_return_status_changed *out,
                                    of_event_error *err) __attribute__((warn_unused_result));

/* Encoders for the events orderflow publishes. Each checks in against the
 * decoder's rules (so orderflow never publishes what it would reject), then
 * sets *out to a new data object the caller frees with cJSON_Delete().
 * Returns 0, or a negative code with err filled and *out NULL
 * (OF_EVENT_ERR_NO_MEMORY when allocation failed). Optional fields are
 * written only when their has_ flag is set; previous_status NONE is written
 * as null. order_id/return_id may be given in any case; they are written
 * lowercased. */
int of_order_status_changed_encode(const of_order_status_changed *in, cJSON **out,
                                   of_event_error *err) __attribute__((warn_unused_result));
int of_order_status_update_encode(const of_order_status_update *in, cJSON **out,
                                  of_event_error *err) __attribute__((warn_unused_result));
int of_order_deadline_expired_encode(const of_order_deadline_expired *in, cJSON **out,
                                     of_event_error *err) __attribute__((warn_unused_result));
int of_return_status_changed_encode(const of_return_status_changed *in, cJSON **out,
                                    of_event_error *err) __attribute__((warn_unused_result));

/* Checks that topic carries events of type (contract section 3): returns 0,
 * or OF_EVENT_ERR_UNKNOWN_TYPE with err filled. A topic outside the contract
 * carries no type. */
int of_contract_check_type(const char *topic, const char *type, of_event_error *err)
    __attribute__((warn_unused_result));

/* Any decoded event, tagged by its type. */
typedef struct of_contract_data {
    const char *type; /* an OF_TYPE_ constant (static; compare with strcmp) */
    union {
        of_order_created order_created;                 /* OF_TYPE_ORDER_CREATED */
        of_order_status_update order_status_update;     /* OF_TYPE_ORDER_STATUS_UPDATE */
        of_order_status_changed order_status_changed;   /* OF_TYPE_ORDER_STATUS_CHANGED */
        of_return_requested return_requested;           /* OF_TYPE_RETURN_REQUESTED */
        of_return_status_changed return_status_changed; /* OF_TYPE_RETURN_STATUS_CHANGED */
        of_order_deadline_expired deadline_expired;     /* OF_TYPE_ORDER_DEADLINE_EXPIRED */
    } u;                                                /* the member named by type */
} of_contract_data;

/* Bytes an of_contract_data needs for an event of this type: the type and the
 * member it names, not the whole union (order.created's lines make that union
 * several KB, and a batch holds one per event). Decoding an event of that type
 * into a buffer of this size touches nothing beyond it. */
size_t of_contract_data_size(const char *type);

/* Decodes ev->data with the decoder for ev->type. Returns 0, a decoder's
 * error, or OF_EVENT_ERR_UNKNOWN_TYPE when the type is not in the contract. */
int of_contract_decode(const of_event *ev, of_contract_data *out, of_event_error *err)
    __attribute__((warn_unused_result));

/* An upstream event as a client publishes it (orderctl, the gateway): builds
 * the binary-mode record of data into out (zeroed by the caller; the topic
 * is prefixed, base_topic is the contract's name) with of_event_build(),
 * then reads it back exactly as the consuming worker will (envelope, the
 * type on its topic, the type's decoder), so nothing goes out that the
 * worker would dead-letter for its shape. Returns 0 (out then holds the
 * record; of_message_free() it) or the event error with err filled and out
 * released. */
int of_contract_build(of_message *out, const char *topic, const char *base_topic, const char *key,
                      const of_event_attrs *attrs, const cJSON *data, of_event_error *err)
    __attribute__((warn_unused_result));

#endif
