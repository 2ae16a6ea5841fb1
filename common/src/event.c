/* event.c: parsing CloudEvents 1.0 envelopes (binary and structured mode) from Kafka records,
 * hardened for untrusted bytes. */
#include "event_internal.h"

#include "orderflow/error.h"
#include "orderflow/text.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ------------------------------------------------------------------------ */
/* Parsing                                                                   */
/* ------------------------------------------------------------------------ */

/* The headers of a record that the parser reads. */
typedef struct header_set {
    const of_header_view *specversion; /* ce_specversion */
    const of_header_view *id;          /* ce_id */
    const of_header_view *type;        /* ce_type */
    const of_header_view *source;      /* ce_source */
    const of_header_view *time;        /* ce_time */
    const of_header_view *subject;     /* ce_subject */
    const of_header_view *traceparent; /* ce_traceparent (distributed tracing extension) */
    const of_header_view *tracestate;  /* ce_tracestate */
    const of_header_view *ctype;       /* content-type (name compared ignoring case) */
    size_t n_ce;                       /* headers whose name starts with "ce_" */
} header_set;

static const char *hval(const of_header_view *h)
{
    return h->value != NULL ? h->value : "";
}

static size_t hlen(const of_header_view *h)
{
    return h->value != NULL ? h->len : 0;
}

/* Sorts the record's headers into hs; rejects duplicates and too many ce_ headers. */
static int collect_headers(const of_record_view *rec, header_set *hs, of_event_error *err)
{
    const char *ce_names[OF_EVENT_CE_HEADERS_MAX];
    static const struct {
        const char *name; /* header name */
        size_t offset;    /* where it lands in header_set */
    } known[] = {
        {"ce_specversion", offsetof(header_set, specversion)},
        {"ce_id", offsetof(header_set, id)},
        {"ce_type", offsetof(header_set, type)},
        {"ce_source", offsetof(header_set, source)},
        {"ce_time", offsetof(header_set, time)},
        {"ce_subject", offsetof(header_set, subject)},
        {OF_TRACEPARENT_HEADER, offsetof(header_set, traceparent)},
        {OF_TRACESTATE_HEADER, offsetof(header_set, tracestate)},
    };

    memset(hs, 0, sizeof *hs);
    if (rec->headers == NULL)
        return 0;
    for (size_t i = 0; i < rec->n_headers; i++) {
        const of_header_view *h = &rec->headers[i];
        if (h->name == NULL)
            continue;
        if (strcasecmp(h->name, "content-type") == 0) {
            if (hs->ctype != NULL)
                return of_event_error_set(err, OF_EVENT_ERR_INVALID_ATTRIBUTE,
                                          "duplicate header \"content-type\"");
            hs->ctype = h;
            continue;
        }
        if (strncmp(h->name, "ce_", 3) != 0)
            continue;
        if (hs->n_ce == OF_EVENT_CE_HEADERS_MAX)
            return of_event_error_set(err, OF_EVENT_ERR_INVALID_ATTRIBUTE,
                                      "record has more than %d \"ce_\" headers",
                                      OF_EVENT_CE_HEADERS_MAX);
        for (size_t k = 0; k < hs->n_ce; k++) {
            if (strcmp(ce_names[k], h->name) == 0) {
                /* Only name known attributes: an extension's name is untrusted text. */
                for (size_t j = 0; j < sizeof known / sizeof known[0]; j++) {
                    if (strcmp(known[j].name, h->name) == 0)
                        return of_event_error_set(err, OF_EVENT_ERR_INVALID_ATTRIBUTE,
                                                  "duplicate header \"%s\"", known[j].name);
                }
                return of_event_error_set(err, OF_EVENT_ERR_INVALID_ATTRIBUTE,
                                          "duplicate extension header at position %zu", i + 1);
            }
        }
        ce_names[hs->n_ce++] = h->name;
        for (size_t j = 0; j < sizeof known / sizeof known[0]; j++) {
            if (strcmp(known[j].name, h->name) == 0) {
                const of_header_view **slot =
                    (const of_header_view **)((char *)hs + known[j].offset);
                *slot = h;
                break;
            }
        }
    }
    return 0;
}

/* Reads a required header, rejecting absence and NUL bytes. */
static int need_header(const of_header_view *h, const char *name, of_event_error *err)
{
    char label[64];
    if (h == NULL)
        return of_event_error_set(err, OF_EVENT_ERR_MISSING_ATTRIBUTE, "missing header \"%s\"",
                                  name);
    snprintf(label, sizeof label, "header \"%s\"", name);
    return ev_check_nul(label, hval(h), hlen(h), err);
}

/* The distributed tracing extension: a valid traceparent (and with it a
 * tracestate that looks valid) is kept; anything else is ignored, since W3C
 * Trace Context has a receiver start a new trace rather than refuse. */
static void read_trace(of_event *ev, const char *tp, size_t tp_len, const char *ts, size_t ts_len)
{
    ev->has_trace = of_trace_parse(tp, tp_len, &ev->trace);
    ev->tracestate[0] = '\0';
    if (ev->has_trace && of_tracestate_valid(ts, ts_len)) {
        memcpy(ev->tracestate, ts, ts_len);
        ev->tracestate[ts_len] = '\0';
    }
}

/* A structured event's string attribute for the tracing extension: NULL
 * when absent, not a string or present twice (ignored, not rejected). */
static const char *structured_trace_attr(const cJSON *root, const char *name)
{
    bool dup;
    const cJSON *item = of_event_json_member(root, name, &dup);
    if (dup || !cJSON_IsString(item) || item->valuestring == NULL)
        return NULL;
    return item->valuestring;
}

static int parse_binary(const of_record_view *rec, const header_set *hs, of_event *ev,
                        of_event_error *err)
{
    int result;
    cJSON *root = NULL;

    ev->mode = OF_EVENT_MODE_BINARY;
    result = need_header(hs->specversion, "ce_specversion", err);
    if (result != 0)
        goto out;
    result = ev_check_specversion("header \"ce_specversion\"", hval(hs->specversion),
                                  hlen(hs->specversion), ev->specversion, err);
    if (result != 0)
        goto out;
    result = need_header(hs->id, "ce_id", err);
    if (result != 0)
        goto out;
    result = ev_check_id("header \"ce_id\"", hval(hs->id), hlen(hs->id), ev->id, err);
    if (result != 0)
        goto out;
    result = need_header(hs->type, "ce_type", err);
    if (result != 0)
        goto out;
    result = ev_check_type("header \"ce_type\"", hval(hs->type), hlen(hs->type), ev->type, err);
    if (result != 0)
        goto out;
    result = need_header(hs->source, "ce_source", err);
    if (result != 0)
        goto out;
    result = ev_check_printable("header \"ce_source\"", hval(hs->source), hlen(hs->source),
                                OF_EVENT_SOURCE_MAX, ev->source, err);
    if (result != 0)
        goto out;
    if (hs->subject != NULL) {
        result = need_header(hs->subject, "ce_subject", err);
        if (result != 0)
            goto out;
        result = ev_check_printable("header \"ce_subject\"", hval(hs->subject), hlen(hs->subject),
                                    OF_EVENT_SUBJECT_MAX, ev->subject, err);
        if (result != 0)
            goto out;
        ev->has_subject = true;
    }
    if (hs->time != NULL) {
        result = need_header(hs->time, "ce_time", err);
        if (result != 0)
            goto out;
        result = ev_check_time("header \"ce_time\"", hval(hs->time), hlen(hs->time), ev->time, err);
        if (result != 0)
            goto out;
        ev->has_time = true;
    }
    result = need_header(hs->ctype, "content-type", err);
    if (result != 0)
        goto out;
    result = ev_check_content_type("header \"content-type\"", hval(hs->ctype), hlen(hs->ctype),
                                   ev->datacontenttype, err);
    if (result != 0)
        goto out;
    if (!ev_media_type_is(hval(hs->ctype), hlen(hs->ctype), CT_JSON)) {
        result = of_event_error_set(err, OF_EVENT_ERR_UNSUPPORTED_CONTENT_TYPE,
                                    "header \"content-type\" must be " CT_JSON " or " CT_CE_JSON);
        goto out;
    }
    result = ev_parse_json(rec->value, rec->value_len, "value", &root, err);
    if (result != 0)
        goto out;
    if (!cJSON_IsObject(root)) {
        result = of_event_error_set(err, OF_EVENT_ERR_DATA_NOT_OBJECT,
                                    "value must be a JSON object, not %s",
                                    of_event_json_type_name(root));
        goto out;
    }
    if (hs->traceparent != NULL)
        read_trace(ev, hval(hs->traceparent), hlen(hs->traceparent),
                   hs->tracestate != NULL ? hval(hs->tracestate) : NULL,
                   hs->tracestate != NULL ? hlen(hs->tracestate) : 0);
    ev->data = root;
    root = NULL;
out:
    cJSON_Delete(root);
    return result;
}

/* Reads a string attribute of a structured event. Returns 0 with *p NULL when
 * it is absent (or null and optional), 0 with *p set, or an error. */
static int structured_string(const cJSON *root, const char *name, bool required, const char **p,
                             of_event_error *err)
{
    bool dup;
    const cJSON *item = of_event_json_member(root, name, &dup);

    *p = NULL;
    if (dup)
        return of_event_error_set(err, OF_EVENT_ERR_MALFORMED_JSON, "duplicate attribute \"%s\"",
                                  name);
    if (item == NULL || (!required && cJSON_IsNull(item))) {
        if (required)
            return of_event_error_set(err, OF_EVENT_ERR_MISSING_ATTRIBUTE,
                                      "missing attribute \"%s\"", name);
        return 0;
    }
    if (!cJSON_IsString(item) || item->valuestring == NULL)
        return of_event_error_set(err, OF_EVENT_ERR_INVALID_ATTRIBUTE,
                                  "attribute \"%s\" must be a string, not %s", name,
                                  of_event_json_type_name(item));
    *p = item->valuestring;
    return 0;
}

/* Decodes the data_base64 member b64 into ev->data: a base64 string whose
 * bytes are one JSON object. */
static int decode_data_base64(const cJSON *b64, of_event *ev, of_event_error *err)
{
    unsigned char *bytes = NULL;
    size_t len = 0;
    cJSON *data = NULL;
    int result;

    if (!cJSON_IsString(b64) || b64->valuestring == NULL)
        return of_event_error_set(err, OF_EVENT_ERR_INVALID_ATTRIBUTE,
                                  "attribute \"data_base64\" must be a string, not %s",
                                  of_event_json_type_name(b64));
    result = of_base64_decode(b64->valuestring, strlen(b64->valuestring), &bytes, &len);
    if (result == OF_ENOMEM)
        return of_event_error_set(err, OF_EVENT_ERR_NO_MEMORY,
                                  "could not decode \"data_base64\": out of memory");
    if (result != 0)
        return of_event_error_set(err, OF_EVENT_ERR_INVALID_ATTRIBUTE,
                                  "attribute \"data_base64\" is not base64");
    result = ev_parse_json(bytes, len, "decoded \"data_base64\"", &data, err);
    free(bytes);
    if (result != 0)
        return result;
    if (!cJSON_IsObject(data)) {
        result = of_event_error_set(err, OF_EVENT_ERR_DATA_NOT_OBJECT,
                                    "decoded \"data_base64\" must be a JSON object, not %s",
                                    of_event_json_type_name(data));
        cJSON_Delete(data);
        return result;
    }
    ev->data = data;
    return 0;
}

/* Parses a structured event from the already parsed value; takes root. */
static int parse_structured(cJSON *root, of_event *ev, of_event_error *err)
{
    int result;
    const char *s = NULL;
    const cJSON *data, *b64;
    bool dup;

    ev->mode = OF_EVENT_MODE_STRUCTURED;
    if (!cJSON_IsObject(root)) {
        result = of_event_error_set(err, OF_EVENT_ERR_MALFORMED_JSON,
                                    "structured event must be a JSON object, not %s",
                                    of_event_json_type_name(root));
        goto out;
    }
    result = structured_string(root, "specversion", true, &s, err);
    if (result != 0)
        goto out;
    result = ev_check_specversion("attribute \"specversion\"", s, strlen(s), ev->specversion, err);
    if (result != 0)
        goto out;
    result = structured_string(root, "id", true, &s, err);
    if (result != 0)
        goto out;
    result = ev_check_id("attribute \"id\"", s, strlen(s), ev->id, err);
    if (result != 0)
        goto out;
    result = structured_string(root, "type", true, &s, err);
    if (result != 0)
        goto out;
    result = ev_check_type("attribute \"type\"", s, strlen(s), ev->type, err);
    if (result != 0)
        goto out;
    result = structured_string(root, "source", true, &s, err);
    if (result != 0)
        goto out;
    result = ev_check_printable("attribute \"source\"", s, strlen(s), OF_EVENT_SOURCE_MAX,
                                ev->source, err);
    if (result != 0)
        goto out;
    result = structured_string(root, "subject", false, &s, err);
    if (result != 0)
        goto out;
    if (s != NULL) {
        result = ev_check_printable("attribute \"subject\"", s, strlen(s), OF_EVENT_SUBJECT_MAX,
                                    ev->subject, err);
        if (result != 0)
            goto out;
        ev->has_subject = true;
    }
    result = structured_string(root, "time", false, &s, err);
    if (result != 0)
        goto out;
    if (s != NULL) {
        result = ev_check_time("attribute \"time\"", s, strlen(s), ev->time, err);
        if (result != 0)
            goto out;
        ev->has_time = true;
    }
    result = structured_string(root, "datacontenttype", false, &s, err);
    if (result != 0)
        goto out;
    if (s == NULL)
        s = CT_JSON;
    result = ev_check_content_type("attribute \"datacontenttype\"", s, strlen(s),
                                   ev->datacontenttype, err);
    if (result != 0)
        goto out;
    if (!ev_media_type_is(s, strlen(s), CT_JSON)) {
        result = of_event_error_set(err, OF_EVENT_ERR_UNSUPPORTED_CONTENT_TYPE,
                                    "attribute \"datacontenttype\" must be " CT_JSON);
        goto out;
    }
    s = structured_trace_attr(root, "traceparent");
    if (s != NULL) {
        const char *ts = structured_trace_attr(root, "tracestate");
        read_trace(ev, s, strlen(s), ts, ts != NULL ? strlen(ts) : 0);
    }
    data = of_event_json_member(root, "data", &dup);
    if (dup) {
        result =
            of_event_error_set(err, OF_EVENT_ERR_MALFORMED_JSON, "duplicate attribute \"data\"");
        goto out;
    }
    b64 = of_event_json_member(root, "data_base64", &dup);
    if (dup) {
        result = of_event_error_set(err, OF_EVENT_ERR_MALFORMED_JSON,
                                    "duplicate attribute \"data_base64\"");
        goto out;
    }
    if (b64 != NULL) {
        /* The JSON format's binary data: a receiver must decode it. Its
         * content type is JSON (checked above), so it holds the data object. */
        if (data != NULL) {
            result = of_event_error_set(err, OF_EVENT_ERR_INVALID_ATTRIBUTE,
                                        "attributes \"data\" and \"data_base64\" exclude each "
                                        "other");
            goto out;
        }
        result = decode_data_base64(b64, ev, err);
        goto out;
    }
    if (data == NULL) {
        result =
            of_event_error_set(err, OF_EVENT_ERR_MISSING_ATTRIBUTE, "missing attribute \"data\"");
        goto out;
    }
    if (!cJSON_IsObject(data)) {
        result = of_event_error_set(err, OF_EVENT_ERR_DATA_NOT_OBJECT,
                                    "attribute \"data\" must be a JSON object, not %s",
                                    of_event_json_type_name(data));
        goto out;
    }
    ev->data = cJSON_DetachItemViaPointer(root, (cJSON *)data);
out:
    cJSON_Delete(root);
    return result;
}

int of_event_parse(const of_record_view *rec, of_event *ev, of_event_error *err)
{
    int result;
    header_set hs;
    cJSON *root = NULL;

    ev_error_clear(err);
    if (ev == NULL)
        return of_event_error_set(err, OF_EVENT_ERR_MISSING_ATTRIBUTE,
                                  "could not parse event: no event to fill");
    memset(ev, 0, sizeof *ev);
    if (rec == NULL) {
        result = of_event_error_set(err, OF_EVENT_ERR_MISSING_ATTRIBUTE,
                                    "could not parse event: no record");
        goto out;
    }
    if (rec->value_len > OF_EVENT_VALUE_MAX) {
        result = of_event_error_set(err, OF_EVENT_ERR_VALUE_TOO_LARGE,
                                    "value is %zu bytes, more than the limit of %d", rec->value_len,
                                    OF_EVENT_VALUE_MAX);
        goto out;
    }
    result = collect_headers(rec, &hs, err);
    if (result != 0)
        goto out;

    if (hs.ctype != NULL) {
        result = need_header(hs.ctype, "content-type", err);
        if (result != 0)
            goto out;
        if (ev_media_type_is(hval(hs.ctype), hlen(hs.ctype), CT_CE_JSON)) {
            result = ev_parse_json(rec->value, rec->value_len, "value", &root, err);
            if (result != 0)
                goto out;
            result = parse_structured(root, ev, err);
            root = NULL;
            goto out;
        }
        if (ev_media_type_is(hval(hs.ctype), hlen(hs.ctype), CT_CE_BATCH)) {
            result = of_event_error_set(err, OF_EVENT_ERR_UNSUPPORTED_CONTENT_TYPE,
                                        "batched mode (" CT_CE_BATCH ") is not supported");
            goto out;
        }
    }
    if (hs.specversion == NULL && (hs.ctype != NULL || hs.n_ce > 0)) {
        /* No ce_specversion header, so not binary mode: a structured event
         * whatever the content type says, when the value is a JSON object
         * with "specversion" (the CloudEvents SDKs send their structured mode
         * with the data's content type, application/json). Else binary mode
         * reports what is missing. */
        result = ev_parse_json(rec->value, rec->value_len, "value", &root, err);
        if (result == OF_EVENT_ERR_NO_MEMORY)
            goto out;
        if (result == 0 && cJSON_IsObject(root) &&
            of_event_json_member(root, "specversion", NULL) != NULL) {
            result = parse_structured(root, ev, err);
            root = NULL;
            goto out;
        }
        cJSON_Delete(root);
        root = NULL;
        ev_error_clear(err);
    }
    if (hs.ctype != NULL || hs.n_ce > 0) {
        result = parse_binary(rec, &hs, ev, err);
        goto out;
    }
    /* No ce_ headers and no content type: a structured event sent without
     * its content type, or not a CloudEvent at all. */
    result = ev_parse_json(rec->value, rec->value_len, "value", &root, err);
    if (result == OF_EVENT_ERR_NO_MEMORY)
        goto out;
    if (result != 0 || of_event_json_member(root, "specversion", NULL) == NULL) {
        result = of_event_error_set(err, OF_EVENT_ERR_MISSING_ATTRIBUTE,
                                    "record has no \"ce_\" headers and no content type, and its "
                                    "value is not a structured event");
        goto out;
    }
    result = parse_structured(root, ev, err);
    root = NULL;
out:
    cJSON_Delete(root);
    if (result != 0)
        of_event_free(ev);
    return result;
}

void of_event_free(of_event *ev)
{
    if (ev == NULL)
        return;
    cJSON_Delete(ev->data);
    memset(ev, 0, sizeof *ev);
}
