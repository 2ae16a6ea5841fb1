/* contract_encode.c: the encoders of the events orderflow publishes, checked by their decoders. */
#include "contract_internal.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Encoders: build the object, then run the decoder over it, so the rules    */
/* live in one place.                                                        */
/* ------------------------------------------------------------------------ */

/* True when buf holds a NUL within size bytes (a usable C string). */
bool ct_terminated(const char *buf, size_t size)
{
    return memchr(buf, '\0', size) != NULL;
}

int ct_no_memory(cJSON **obj, of_event_error *err)
{
    cJSON_Delete(*obj);
    *obj = NULL;
    return of_event_error_set(err, OF_EVENT_ERR_NO_MEMORY, "could not encode data: out of memory");
}

int ct_bad_string(const char *name, of_event_error *err)
{
    return of_event_error_set(err, OF_EVENT_ERR_OUT_OF_RANGE,
                              "could not encode data: field \"%s\" is not terminated", name);
}

/* Adds a UUID lowercased; the decoder check afterwards rejects non-UUIDs. */
bool ct_add_uuid(cJSON *obj, const char *name, const char *uuid)
{
    char lower[OF_UUID_STRLEN + 1];
    size_t len = strnlen(uuid, OF_UUID_STRLEN);
    for (size_t i = 0; i < len; i++)
        lower[i] = (char)tolower((unsigned char)uuid[i]);
    lower[len] = '\0';
    return cJSON_AddStringToObject(obj, name, lower) != NULL;
}

static bool add_status(cJSON *obj, const char *name, const char *status_name)
{
    if (status_name == NULL)
        return cJSON_AddNullToObject(obj, name) != NULL;
    return cJSON_AddStringToObject(obj, name, status_name) != NULL;
}

int of_order_status_changed_encode(const of_order_status_changed *in, cJSON **out,
                                   of_event_error *err)
{
    int result;
    cJSON *obj = NULL;
    of_order_status_changed check;

    *out = NULL;
    if (!ct_terminated(in->order_id, sizeof in->order_id))
        return ct_bad_string("order_id", err);
    if (!ct_terminated(in->reason, sizeof in->reason))
        return ct_bad_string("reason", err);
    if (!ct_terminated(in->correlation_id, sizeof in->correlation_id))
        return ct_bad_string("correlation_id", err);
    if (!ct_terminated(in->at, sizeof in->at))
        return ct_bad_string("at", err);
    if (of_order_status_name(in->status) == NULL ||
        (in->previous_status != OF_ORDER_NONE && of_order_status_name(in->previous_status) == NULL))
        return of_event_error_set(err, OF_EVENT_ERR_INVALID_STATUS,
                                  "could not encode data: status out of range");
    obj = cJSON_CreateObject();
    if (obj == NULL || !ct_add_uuid(obj, "order_id", in->order_id) ||
        !add_status(obj, "status", of_order_status_name(in->status)) ||
        !add_status(obj, "previous_status", of_order_status_name(in->previous_status)) ||
        cJSON_AddNumberToObject(obj, "version", in->version) == NULL ||
        (in->has_reason && cJSON_AddStringToObject(obj, "reason", in->reason) == NULL) ||
        cJSON_AddStringToObject(obj, "correlation_id", in->correlation_id) == NULL ||
        cJSON_AddStringToObject(obj, "at", in->at) == NULL)
        return ct_no_memory(&obj, err);
    result = of_order_status_changed_decode(obj, &check, err);
    if (result != 0) {
        cJSON_Delete(obj);
        return result;
    }
    *out = obj;
    return 0;
}

int of_order_status_update_encode(const of_order_status_update *in, cJSON **out,
                                  of_event_error *err)
{
    int result;
    cJSON *obj = NULL;
    of_order_status_update check;

    *out = NULL;
    if (!ct_terminated(in->order_id, sizeof in->order_id))
        return ct_bad_string("order_id", err);
    if (!ct_terminated(in->reason, sizeof in->reason))
        return ct_bad_string("reason", err);
    if (!of_order_status_is_update(in->status))
        return of_event_error_set(err, OF_EVENT_ERR_INVALID_STATUS,
                                  "field \"status\" must be one of " UPDATE_STATUS_LIST);
    obj = cJSON_CreateObject();
    if (obj == NULL || !ct_add_uuid(obj, "order_id", in->order_id) ||
        !add_status(obj, "status", of_order_status_name(in->status)) ||
        (in->has_reason && cJSON_AddStringToObject(obj, "reason", in->reason) == NULL) ||
        (in->has_expected_version &&
         cJSON_AddNumberToObject(obj, "expected_version", in->expected_version) == NULL))
        return ct_no_memory(&obj, err);
    result = of_order_status_update_decode(obj, &check, err);
    if (result != 0) {
        cJSON_Delete(obj);
        return result;
    }
    *out = obj;
    return 0;
}

int of_return_status_changed_encode(const of_return_status_changed *in, cJSON **out,
                                    of_event_error *err)
{
    int result;
    cJSON *obj = NULL;
    of_return_status_changed check;

    *out = NULL;
    if (!ct_terminated(in->return_id, sizeof in->return_id))
        return ct_bad_string("return_id", err);
    if (!ct_terminated(in->order_id, sizeof in->order_id))
        return ct_bad_string("order_id", err);
    if (!ct_terminated(in->reason, sizeof in->reason))
        return ct_bad_string("reason", err);
    if (!ct_terminated(in->correlation_id, sizeof in->correlation_id))
        return ct_bad_string("correlation_id", err);
    if (!ct_terminated(in->at, sizeof in->at))
        return ct_bad_string("at", err);
    if (of_return_status_name(in->status) == NULL ||
        (in->previous_status != OF_RETURN_NONE &&
         of_return_status_name(in->previous_status) == NULL))
        return of_event_error_set(err, OF_EVENT_ERR_INVALID_STATUS,
                                  "could not encode data: status out of range");
    obj = cJSON_CreateObject();
    if (obj == NULL || !ct_add_uuid(obj, "return_id", in->return_id) ||
        !ct_add_uuid(obj, "order_id", in->order_id) ||
        !add_status(obj, "status", of_return_status_name(in->status)) ||
        !add_status(obj, "previous_status", of_return_status_name(in->previous_status)) ||
        cJSON_AddNumberToObject(obj, "version", in->version) == NULL ||
        (in->has_reason && cJSON_AddStringToObject(obj, "reason", in->reason) == NULL) ||
        (in->has_refund_cents &&
         cJSON_AddNumberToObject(obj, "refund_cents", (double)in->refund_cents) == NULL) ||
        cJSON_AddStringToObject(obj, "correlation_id", in->correlation_id) == NULL ||
        cJSON_AddStringToObject(obj, "at", in->at) == NULL)
        return ct_no_memory(&obj, err);
    result = of_return_status_changed_decode(obj, &check, err);
    if (result != 0) {
        cJSON_Delete(obj);
        return result;
    }
    *out = obj;
    return 0;
}

int of_order_deadline_expired_encode(const of_order_deadline_expired *in, cJSON **out,
                                     of_event_error *err)
{
    int result;
    cJSON *obj = NULL;
    of_order_deadline_expired check;

    *out = NULL;
    if (!ct_terminated(in->order_id, sizeof in->order_id))
        return ct_bad_string("order_id", err);
    if (!ct_terminated(in->kind, sizeof in->kind))
        return ct_bad_string("kind", err);
    if (!ct_terminated(in->due_at, sizeof in->due_at))
        return ct_bad_string("due_at", err);
    obj = cJSON_CreateObject();
    if (obj == NULL || !ct_add_uuid(obj, "order_id", in->order_id) ||
        cJSON_AddStringToObject(obj, "kind", in->kind) == NULL ||
        cJSON_AddStringToObject(obj, "due_at", in->due_at) == NULL)
        return ct_no_memory(&obj, err);
    /* What orderflow publishes, it must be able to read back. */
    result = of_order_deadline_expired_decode(obj, &check, err);
    if (result != 0) {
        cJSON_Delete(obj);
        return result;
    }
    *out = obj;
    return 0;
}
