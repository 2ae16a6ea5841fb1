/* contract.c: the contract's statuses, which types each topic carries, and the decoder for any
 * type. */
#include "contract_internal.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Statuses                                                                  */
/* ------------------------------------------------------------------------ */

const char *const of_order_status_names[OF_ORDER_STATUS_COUNT] = {
    [OF_ORDER_NONE] = "",
    [OF_ORDER_CREATED] = "CREATED",
    [OF_ORDER_INVENTORY_RESERVED] = "INVENTORY_RESERVED",
    [OF_ORDER_CONFIRMED] = "CONFIRMED",
    [OF_ORDER_REJECTED] = "REJECTED",
    [OF_ORDER_PAID] = "PAID",
    [OF_ORDER_SHIPPED] = "SHIPPED",
    [OF_ORDER_DELIVERED] = "DELIVERED",
    [OF_ORDER_CANCELLED] = "CANCELLED",
    [OF_ORDER_RETURNED] = "RETURNED",
    [OF_ORDER_PARTIALLY_RETURNED] = "PARTIALLY_RETURNED",
};
#define N_ORDER_STATUS OF_ORDER_STATUS_COUNT

const char *const of_return_status_names[OF_RETURN_STATUS_COUNT] = {
    [OF_RETURN_NONE] = "",
    [OF_RETURN_INITIATED] = "INITIATED",
    [OF_RETURN_REJECTED] = "REJECTED",
    [OF_RETURN_RETURN_PROCESSED] = "RETURN_PROCESSED",
    [OF_RETURN_REFUND_INITIATED] = "REFUND_INITIATED",
    [OF_RETURN_REFUND_PROCESSED] = "REFUND_PROCESSED",
    [OF_RETURN_REFUND_COMPLETED] = "REFUND_COMPLETED",
};
#define N_RETURN_STATUS OF_RETURN_STATUS_COUNT

const char *of_order_status_name(of_order_status status)
{
    if ((int)status <= 0 || (size_t)status >= N_ORDER_STATUS)
        return NULL;
    return of_order_status_names[status];
}

int of_order_status_parse(const char *name, of_order_status *out)
{
    if (name == NULL)
        return OF_EINVAL;
    for (size_t i = 1; i < N_ORDER_STATUS; i++) {
        if (strcmp(of_order_status_names[i], name) == 0) {
            *out = (of_order_status)i;
            return 0;
        }
    }
    return OF_EINVAL;
}

bool of_order_status_is_update(of_order_status status)
{
    switch (status) {
    case OF_ORDER_PAID:
    case OF_ORDER_SHIPPED:
    case OF_ORDER_DELIVERED:
    case OF_ORDER_CANCELLED:
    case OF_ORDER_RETURNED:
    case OF_ORDER_PARTIALLY_RETURNED:
        return true;
    default:
        return false;
    }
}

const char *of_return_status_name(of_return_status status)
{
    if ((int)status <= 0 || (size_t)status >= N_RETURN_STATUS)
        return NULL;
    return of_return_status_names[status];
}

int of_return_status_parse(const char *name, of_return_status *out)
{
    if (name == NULL)
        return OF_EINVAL;
    for (size_t i = 1; i < N_RETURN_STATUS; i++) {
        if (strcmp(of_return_status_names[i], name) == 0) {
            *out = (of_return_status)i;
            return 0;
        }
    }
    return OF_EINVAL;
}

/* ------------------------------------------------------------------------ */
/* Types per topic                                                           */
/* ------------------------------------------------------------------------ */

/* True when s is short text of [A-Za-z0-9._-], safe to quote in a reason. */
static bool quotable(const char *s)
{
    size_t len = s != NULL ? strnlen(s, 130) : 0;
    if (len == 0 || len > 128)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) &&
            c != '.' && c != '_' && c != '-')
            return false;
    }
    return true;
}

int of_contract_check_type(const char *topic, const char *type, of_event_error *err)
{
    static const struct {
        const char *topic; /* contract topic */
        const char *type;  /* a type it carries */
    } pairs[] = {
        {OF_TOPIC_ORDER_CREATED, OF_TYPE_ORDER_CREATED},
        {OF_TOPIC_ORDER_STATUS, OF_TYPE_ORDER_STATUS_CHANGED},
        {OF_TOPIC_ORDER_STATUS, OF_TYPE_ORDER_STATUS_UPDATE},
        {OF_TOPIC_ORDER_STATUS, OF_TYPE_ORDER_DEADLINE_EXPIRED},
        {OF_TOPIC_RETURN_REQUESTED, OF_TYPE_RETURN_REQUESTED},
        {OF_TOPIC_RETURN_REQUESTED, OF_TYPE_RETURN_STATUS_CHANGED},
    };
    if (topic != NULL && type != NULL) {
        for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
            if (strcmp(pairs[i].topic, topic) == 0 && strcmp(pairs[i].type, type) == 0)
                return 0;
        }
    }
    if (quotable(topic) && quotable(type))
        return of_event_error_set(err, OF_EVENT_ERR_UNKNOWN_TYPE,
                                  "event type \"%s\" is not carried by topic \"%s\"", type, topic);
    return of_event_error_set(err, OF_EVENT_ERR_UNKNOWN_TYPE,
                              "event type is not carried by this topic");
}

size_t of_contract_data_size(const char *type)
{
    size_t head = offsetof(of_contract_data, u);
    if (type == NULL)
        return sizeof(of_contract_data);
    if (strcmp(type, OF_TYPE_ORDER_CREATED) == 0)
        return head + sizeof(of_order_created);
    if (strcmp(type, OF_TYPE_ORDER_STATUS_UPDATE) == 0)
        return head + sizeof(of_order_status_update);
    if (strcmp(type, OF_TYPE_ORDER_STATUS_CHANGED) == 0)
        return head + sizeof(of_order_status_changed);
    if (strcmp(type, OF_TYPE_ORDER_DEADLINE_EXPIRED) == 0)
        return head + sizeof(of_order_deadline_expired);
    if (strcmp(type, OF_TYPE_RETURN_REQUESTED) == 0)
        return head + sizeof(of_return_requested);
    if (strcmp(type, OF_TYPE_RETURN_STATUS_CHANGED) == 0)
        return head + sizeof(of_return_status_changed);
    return sizeof(of_contract_data);
}

int of_contract_decode(const of_event *ev, of_contract_data *out, of_event_error *err)
{
    const char *type = ev->type;
    if (strcmp(type, OF_TYPE_ORDER_CREATED) == 0) {
        out->type = OF_TYPE_ORDER_CREATED;
        return of_order_created_decode(ev->data, &out->u.order_created, err);
    }
    if (strcmp(type, OF_TYPE_ORDER_STATUS_UPDATE) == 0) {
        out->type = OF_TYPE_ORDER_STATUS_UPDATE;
        return of_order_status_update_decode(ev->data, &out->u.order_status_update, err);
    }
    if (strcmp(type, OF_TYPE_ORDER_STATUS_CHANGED) == 0) {
        out->type = OF_TYPE_ORDER_STATUS_CHANGED;
        return of_order_status_changed_decode(ev->data, &out->u.order_status_changed, err);
    }
    if (strcmp(type, OF_TYPE_ORDER_DEADLINE_EXPIRED) == 0) {
        out->type = OF_TYPE_ORDER_DEADLINE_EXPIRED;
        return of_order_deadline_expired_decode(ev->data, &out->u.deadline_expired, err);
    }
    if (strcmp(type, OF_TYPE_RETURN_REQUESTED) == 0) {
        out->type = OF_TYPE_RETURN_REQUESTED;
        return of_return_requested_decode(ev->data, &out->u.return_requested, err);
    }
    if (strcmp(type, OF_TYPE_RETURN_STATUS_CHANGED) == 0) {
        out->type = OF_TYPE_RETURN_STATUS_CHANGED;
        return of_return_status_changed_decode(ev->data, &out->u.return_status_changed, err);
    }
    out->type = NULL;
    if (quotable(type))
        return of_event_error_set(err, OF_EVENT_ERR_UNKNOWN_TYPE, "unknown event type \"%s\"",
                                  type);
    return of_event_error_set(err, OF_EVENT_ERR_UNKNOWN_TYPE, "unknown event type");
}

int of_contract_build(of_message *out, const char *topic, const char *base_topic, const char *key,
                      const of_event_attrs *attrs, const cJSON *data, of_event_error *err)
{
    of_header_view *hv = NULL;
    of_contract_data *d = NULL;
    of_event ev;
    int rc = of_event_build(out, topic, key, attrs, data, err);

    memset(&ev, 0, sizeof ev);
    if (rc != 0)
        return rc;
    hv = calloc(out->n_headers + 1, sizeof *hv);
    d = malloc(sizeof *d);
    if (hv == NULL || d == NULL) {
        rc = of_event_error_set(err, OF_EVENT_ERR_NO_MEMORY,
                                "could not check the event: out of "
                                "memory");
        goto out;
    }
    for (size_t i = 0; i < out->n_headers; i++)
        hv[i] = (of_header_view){out->headers[i].name, out->headers[i].value, out->headers[i].len};
    of_record_view rec = {.topic = out->topic,
                          .partition = -1,
                          .offset = -1,
                          .key = out->key,
                          .key_len = out->key_len,
                          .value = out->value,
                          .value_len = out->value_len,
                          .headers = hv,
                          .n_headers = out->n_headers};
    rc = of_event_parse(&rec, &ev, err);
    if (rc == 0)
        rc = of_contract_check_type(base_topic, ev.type, err);
    if (rc == 0)
        rc = of_contract_decode(&ev, d, err);
out:
    of_event_free(&ev);
    free(d);
    free(hv);
    if (rc != 0)
        of_message_free(out);
    return rc;
}
