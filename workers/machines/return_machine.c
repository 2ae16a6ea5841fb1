/* return_machine.c: the ReturnRefund transition table and its return.status.changed event. */
#include "return_machine.h"

#include "orderflow/contract.h"
#include "orderflow/event.h"
#include "orderflow/uuid.h"

#include <stdio.h>
#include <string.h>

static int return_changed(of_step_ctx *s, const char *from, const char *to, int version,
                          of_message *out);

static const of_transition return_rows[] = {
    {OF_STATE_NONE, "return.requested", "INITIATED", "InitiateReturn", "ReturnRefund", true,
     "RUNNING", NULL},
    {OF_STATE_NONE, "return.requested", "REJECTED", "InitiateReturn", "ReturnRefund", true,
     "FAILED", NULL},
    {"INITIATED", OF_TRIGGER_AUTO, "RETURN_PROCESSED", "ProcessReturn", "ReturnRefund", false,
     "RUNNING", NULL},
    {"RETURN_PROCESSED", OF_TRIGGER_AUTO, "REFUND_INITIATED", "InitiateRefund", "ReturnRefund",
     false, "RUNNING", NULL},
    {"REFUND_INITIATED", OF_TRIGGER_AUTO, "REFUND_PROCESSED", "ProcessRefund", "ReturnRefund",
     false, "RUNNING", NULL},
    {"REFUND_PROCESSED", OF_TRIGGER_AUTO, "REFUND_COMPLETED", "RefundCompleted", "ReturnRefund",
     false, "SUCCEEDED", NULL},
};

const of_machine of_return_machine = {
    "return", "return", return_rows, sizeof return_rows / sizeof return_rows[0], return_changed,
};

/* return.status.changed to return.requested, keyed by the order id so that
 * all of one order's events stay in one partition. */
static int return_changed(of_step_ctx *s, const char *from, const char *to, int version,
                          of_message *out)
{
    const of_return_step *rs = s->user;
    of_return_status_changed ev;
    of_event_error err;
    char id[OF_UUID_STRLEN + 1], topic[256];
    cJSON *data = NULL;
    int rc;

    memset(&ev, 0, sizeof ev);
    snprintf(ev.return_id, sizeof ev.return_id, "%s", s->return_id);
    snprintf(ev.order_id, sizeof ev.order_id, "%s", s->order_id);
    if (of_return_status_parse(to, &ev.status) != 0)
        return -1;
    ev.previous_status = OF_RETURN_NONE;
    if (from[0] != '\0' && of_return_status_parse(from, &ev.previous_status) != 0)
        return -1;
    ev.version = version;
    if (s->reason[0] != '\0') {
        ev.has_reason = true;
        snprintf(ev.reason, sizeof ev.reason, "%s", s->reason);
    }
    if (rs != NULL && rs->has_refund) {
        ev.has_refund_cents = true;
        ev.refund_cents = rs->refund_cents;
    }
    snprintf(ev.correlation_id, sizeof ev.correlation_id, "%s", s->correlation_id);
    if (of_event_time_now(ev.at) != 0 || of_uuid_v7(id) != 0)
        return -1;
    rc = of_return_status_changed_encode(&ev, &data, &err);
    if (rc != 0)
        return rc;
    of_event_attrs attrs = {id, OF_TYPE_RETURN_STATUS_CHANGED, s->b->w->source, s->order_id, NULL};
    rc = of_event_build(out,
                        of_worker_topic(s->b->w, OF_TOPIC_RETURN_REQUESTED, topic, sizeof topic),
                        s->order_id, &attrs, data, &err);
    cJSON_Delete(data);
    return rc;
}
