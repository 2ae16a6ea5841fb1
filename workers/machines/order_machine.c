/* order_machine.c: the order transition table and its order.status.changed event. */
#include "order_machine.h"

#include "orderflow/contract.h"
#include "orderflow/event.h"
#include "orderflow/uuid.h"

#include <stdio.h>
#include <string.h>

static int order_changed(of_step_ctx *s, const char *from, const char *to, int version,
                         of_message *out);

/* One row per edge; rows sharing (from, trigger) are adjacent and share their
 * step, which chooses the target. */
static const of_transition order_rows[] = {
    /* OrderProcess */
    {OF_STATE_NONE, "order.created", "CREATED", "CreateOrder", "OrderProcess", true, "RUNNING",
     NULL},
    {OF_STATE_NONE, "order.created", "REJECTED", "CreateOrder", "OrderProcess", true, "FAILED",
     NULL},
    {"CREATED", OF_TRIGGER_AUTO, "INVENTORY_RESERVED", "UpdateInventory", "OrderProcess", false,
     "RUNNING", NULL},
    {"CREATED", OF_TRIGGER_AUTO, "REJECTED", "UpdateInventory", "OrderProcess", false, "FAILED",
     NULL},
    {"INVENTORY_RESERVED", OF_TRIGGER_AUTO, "CONFIRMED", "OrderCompleted", "OrderProcess", false,
     "SUCCEEDED", "OrderUpdate"},
    /* OrderUpdate */
    {"CONFIRMED", "PAID", "PAID", "RecordPayment", "OrderUpdate", false, "RUNNING", NULL},
    {"CONFIRMED", "CANCELLED", "CANCELLED", "CancelOrder", "OrderUpdate", false, "ABORTED", NULL},
    {"CONFIRMED", OF_TRIGGER_PAYMENT_TIMEOUT, "CANCELLED", "PaymentTimeout", "OrderUpdate", false,
     "TIMED_OUT", NULL},
    {"PAID", "SHIPPED", "SHIPPED", "RecordShipment", "OrderUpdate", false, "RUNNING", NULL},
    {"PAID", "CANCELLED", "CANCELLED", "CancelOrder", "OrderUpdate", false, "ABORTED", NULL},
    {"SHIPPED", "DELIVERED", "DELIVERED", "RecordDelivery", "OrderUpdate", false, "SUCCEEDED",
     NULL},
    {"DELIVERED", "RETURNED", "RETURNED", "ApplyReturn", "OrderUpdate", false, "SUCCEEDED", NULL},
    {"DELIVERED", "PARTIALLY_RETURNED", "PARTIALLY_RETURNED", "ApplyReturn", "OrderUpdate", false,
     "SUCCEEDED", NULL},
    {"PARTIALLY_RETURNED", "RETURNED", "RETURNED", "ApplyReturn", "OrderUpdate", false, "SUCCEEDED",
     NULL},
    {"PARTIALLY_RETURNED", "PARTIALLY_RETURNED", "PARTIALLY_RETURNED", "ApplyReturn", "OrderUpdate",
     false, "SUCCEEDED", NULL},
};

const of_machine of_order_machine = {
    "order", "order", order_rows, sizeof order_rows / sizeof order_rows[0], order_changed,
};

/* order.status.changed to order.status, keyed and subjected by the order id. */
static int order_changed(of_step_ctx *s, const char *from, const char *to, int version,
                         of_message *out)
{
    of_order_status_changed ev;
    of_event_error err;
    char id[OF_UUID_STRLEN + 1], topic[256];
    cJSON *data = NULL;
    int rc;

    memset(&ev, 0, sizeof ev);
    snprintf(ev.order_id, sizeof ev.order_id, "%s", s->entity_id);
    if (of_order_status_parse(to, &ev.status) != 0)
        return -1;
    ev.previous_status = OF_ORDER_NONE;
    if (from[0] != '\0' && of_order_status_parse(from, &ev.previous_status) != 0)
        return -1;
    ev.version = version;
    if (s->reason[0] != '\0') {
        ev.has_reason = true;
        snprintf(ev.reason, sizeof ev.reason, "%s", s->reason);
    }
    snprintf(ev.correlation_id, sizeof ev.correlation_id, "%s", s->correlation_id);
    if (of_event_time_now(ev.at) != 0 || of_uuid_v7(id) != 0)
        return -1;
    rc = of_order_status_changed_encode(&ev, &data, &err);
    if (rc != 0)
        return rc;
    of_event_attrs attrs = {id, OF_TYPE_ORDER_STATUS_CHANGED, s->b->w->source, s->entity_id, NULL};
    rc = of_event_build(out, of_worker_topic(s->b->w, OF_TOPIC_ORDER_STATUS, topic, sizeof topic),
                        s->entity_id, &attrs, data, &err);
    cJSON_Delete(data);
    return rc;
}
