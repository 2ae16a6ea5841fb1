/* event_build.c: building binary-mode CloudEvents records for what orderflow publishes. */
#include "event_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ------------------------------------------------------------------------ */
/* Building                                                                  */
/* ------------------------------------------------------------------------ */

static char *dup_text(const char *s, size_t len)
{
    char *p = malloc(len + 1);
    if (p != NULL)
        ev_copy_text(p, s, len);
    return p;
}

int of_event_build(of_message *out, const char *topic, const char *key, const of_event_attrs *attrs,
                   const cJSON *data, of_event_error *err)
{
    int result;
    of_event ev; /* scratch space for the checked attributes */
    char *printed = NULL;
    size_t len;

    ev_error_clear(err);
    if (out == NULL || attrs == NULL || topic == NULL || topic[0] == '\0')
        return of_event_error_set(err, OF_EVENT_ERR_MISSING_ATTRIBUTE,
                                  "could not build event: no message, topic or attributes");
    memset(&ev, 0, sizeof ev);
    if (attrs->id == NULL || attrs->type == NULL || attrs->source == NULL) {
        result = of_event_error_set(err, OF_EVENT_ERR_MISSING_ATTRIBUTE,
                                    "could not build event: \"ce_id\", \"ce_type\" and "
                                    "\"ce_source\" are required");
        goto out;
    }
    result = ev_check_id("attribute \"ce_id\"", attrs->id, strlen(attrs->id), ev.id, err);
    if (result != 0)
        goto out;
    result = ev_check_type("attribute \"ce_type\"", attrs->type, strlen(attrs->type), ev.type, err);
    if (result != 0)
        goto out;
    result = ev_check_printable("attribute \"ce_source\"", attrs->source, strlen(attrs->source),
                                OF_EVENT_SOURCE_MAX, ev.source, err);
    if (result != 0)
        goto out;
    if (attrs->subject != NULL) {
        result = ev_check_printable("attribute \"ce_subject\"", attrs->subject,
                                    strlen(attrs->subject), OF_EVENT_SUBJECT_MAX, ev.subject, err);
        if (result != 0)
            goto out;
    }
    if (attrs->time != NULL) {
        result = ev_check_time("attribute \"ce_time\"", attrs->time,
                               strnlen(attrs->time, OF_EVENT_TIME_MAX + 1), ev.time, err);
        if (result != 0)
            goto out;
    } else if (of_event_time_now(ev.time) != 0) {
        result = of_event_error_set(err, OF_EVENT_ERR_INVALID_TIME,
                                    "could not build event: could not read the clock");
        goto out;
    }
    if (!cJSON_IsObject(data)) {
        result = of_event_error_set(err, OF_EVENT_ERR_DATA_NOT_OBJECT,
                                    "could not build event: data must be a JSON object, not %s",
                                    data == NULL ? "missing" : of_event_json_type_name(data));
        goto out;
    }
    printed = cJSON_PrintUnformatted(data);
    if (printed == NULL) {
        result =
            of_event_error_set(err, OF_EVENT_ERR_NO_MEMORY, "could not build event: out of memory");
        goto out;
    }
    len = strlen(printed);
    if (len > OF_EVENT_VALUE_MAX) {
        result = of_event_error_set(err, OF_EVENT_ERR_VALUE_TOO_LARGE,
                                    "value is %zu bytes, more than the limit of %d", len,
                                    OF_EVENT_VALUE_MAX);
        goto out;
    }
    /* cJSON prints strings as stored: refuse what a reader would reject. */
    if (!of_utf8_valid(printed, len)) {
        result = of_event_error_set(err, OF_EVENT_ERR_MALFORMED_JSON,
                                    "could not build event: data is not valid UTF-8");
        goto out;
    }

    out->topic = dup_text(topic, strlen(topic));
    out->id = dup_text(ev.id, strlen(ev.id));
    out->value = dup_text(printed, len);
    out->value_len = len;
    if (key != NULL) {
        out->key = dup_text(key, strlen(key));
        out->key_len = strlen(key);
    }
    if (out->topic == NULL || out->id == NULL || out->value == NULL ||
        (key != NULL && out->key == NULL) ||
        of_message_add_header(out, "ce_specversion", OF_EVENT_SPECVERSION,
                              strlen(OF_EVENT_SPECVERSION)) != 0 ||
        of_message_add_header(out, "ce_id", ev.id, strlen(ev.id)) != 0 ||
        of_message_add_header(out, "ce_type", ev.type, strlen(ev.type)) != 0 ||
        of_message_add_header(out, "ce_source", ev.source, strlen(ev.source)) != 0 ||
        of_message_add_header(out, "ce_time", ev.time, strlen(ev.time)) != 0 ||
        (attrs->subject != NULL &&
         of_message_add_header(out, "ce_subject", ev.subject, strlen(ev.subject)) != 0) ||
        of_message_add_header(out, "content-type", CT_JSON, strlen(CT_JSON)) != 0) {
        result =
            of_event_error_set(err, OF_EVENT_ERR_NO_MEMORY, "could not build event: out of memory");
        goto out;
    }
    result = 0;
out:
    cJSON_free(printed);
    if (result != 0)
        of_message_free(out);
    return result;
}
