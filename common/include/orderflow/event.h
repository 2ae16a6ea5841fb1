/* event.h: CloudEvents 1.0 envelopes on Kafka (protocol binding), parsed and built.
 *
 * of_event_parse() turns a consumed record (of_record_view, no librdkafka
 * types) into an of_event: the context attributes, validated against the
 * contract's limits, and the JSON data. Both content modes are accepted:
 *
 *   binary      headers ce_specversion ("1.0"), ce_id, ce_type, ce_source,
 *               optional ce_time and ce_subject, content-type
 *               application/json (parameters allowed); the value is the data
 *   structured  header content-type application/cloudevents+json; the value
 *               is the whole event as one JSON object
 *
 * Of the extensions, the distributed tracing one is read: ce_traceparent and
 * ce_tracestate (binary), traceparent and tracestate (structured). Their
 * values follow W3C Trace Context (trace.h); one that breaks it is ignored,
 * as the recommendation tells a receiver to, and the event is still
 * accepted (the runtime then starts a new trace or continues the entity's).
 *
 * A record with neither ce_ headers nor content-type is read as structured
 * when its value is a JSON object with a "specversion" member; otherwise it
 * is rejected. In structured mode ce_ headers are ignored, as the binding
 * says (the count and duplicate rules below still apply to them).
 *
 * Every rejection fills an of_event_error: a stable code (its name, from
 * of_event_code_name(), is what goes into "dlq_error_code") and a reason in
 * PostgreSQL message style. Reasons never echo rejected bytes, only their
 * position or length, so they are safe to log and to put in a header.
 *
 * Input hardening beyond the CloudEvents rules, all permanent rejections:
 *   - the value must be valid UTF-8 (RFC 8259) and may not contain the escape
 *     \u0000, which cJSON would silently truncate and PostgreSQL's jsonb
 *     refuses (MALFORMED_JSON);
 *   - nothing but whitespace may follow the JSON text (MALFORMED_JSON);
 *   - an object member the parser reads (an attribute, a data field) may not
 *     appear twice in its object (MALFORMED_JSON), so two readers of one
 *     event can never see different values;
 *   - at most OF_EVENT_CE_HEADERS_MAX headers start with "ce_", and none
 *     twice; "content-type" (any case) at most once (INVALID_ATTRIBUTE);
 *   - header values the parser reads may not contain NUL bytes
 *     (INVALID_ATTRIBUTE); a NULL header value counts as empty.
 * Number syntax is cJSON's, which also accepts a few spellings RFC 8259 does
 * not (01, 1.); the typed decoders check the values that matter. cJSON
 * cannot tell a failed allocation from a syntax error while parsing, so a
 * parse that ran out of memory is reported as MALFORMED_JSON.
 *
 * of_event_build() is the other direction, for events orderflow publishes:
 * binary mode, attributes checked with the same rules, so that everything
 * orderflow writes, orderflow can read back.
 *
 * Ownership: of_event owns its data tree; release it with of_event_free().
 * The record passed to of_event_parse() is only read, never kept. */
#ifndef ORDERFLOW_EVENT_H
#define ORDERFLOW_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "orderflow/error.h"
#include "orderflow/message.h"
#include "orderflow/text.h"
#include "orderflow/trace.h"

#define OF_EVENT_VALUE_MAX      65536 /* bytes in a record value, at most */
#define OF_EVENT_ID_MAX         64    /* characters in an id (ce_id and the ids in event data) */
#define OF_EVENT_TYPE_MAX       128   /* characters in ce_type */
#define OF_EVENT_SOURCE_MAX     255   /* characters in ce_source */
#define OF_EVENT_SUBJECT_MAX    255   /* characters in ce_subject */
#define OF_EVENT_CTYPE_MAX      127   /* characters in content-type / datacontenttype */
#define OF_EVENT_TIME_MAX       35    /* characters in an RFC 3339 time (nanoseconds, offset) */
#define OF_EVENT_CE_HEADERS_MAX 64    /* "ce_" headers in one record, at most */
#define OF_EVENT_SPECVERSION    "1.0"

/* Why an event (or a field of its data) was rejected. Values are negative so
 * that they double as return codes. */
typedef enum of_event_code {
    OF_EVENT_OK = 0,                            /* no error */
    OF_EVENT_ERR_VALUE_TOO_LARGE = -1,          /* value longer than OF_EVENT_VALUE_MAX */
    OF_EVENT_ERR_MALFORMED_JSON = -2,           /* not JSON, not UTF-8, duplicate member, ... */
    OF_EVENT_ERR_MISSING_ATTRIBUTE = -3,        /* a required header or attribute is absent */
    OF_EVENT_ERR_INVALID_ATTRIBUTE = -4,        /* an attribute breaks its syntax or length */
    OF_EVENT_ERR_UNSUPPORTED_SPECVERSION = -5,  /* specversion other than "1.0" */
    OF_EVENT_ERR_UNSUPPORTED_CONTENT_TYPE = -6, /* content type other than JSON */
    OF_EVENT_ERR_DATA_NOT_OBJECT = -7,          /* data is not a JSON object */
    OF_EVENT_ERR_MISSING_FIELD = -8,            /* a required data field is absent */
    OF_EVENT_ERR_WRONG_TYPE = -9,               /* a data field has the wrong JSON type */
    OF_EVENT_ERR_OUT_OF_RANGE = -10,            /* a data field's value is outside its range */
    OF_EVENT_ERR_INVALID_ID = -11,              /* an id breaks the id rules (or is no UUID) */
    OF_EVENT_ERR_TOO_MANY_ITEMS = -12,          /* more than 100 items */
    OF_EVENT_ERR_UNKNOWN_TYPE = -13,            /* event type unknown (on this topic) */
    OF_EVENT_ERR_INVALID_STATUS = -14,          /* a status name outside its set */
    OF_EVENT_ERR_INVALID_TIME = -15,            /* a time that is not RFC 3339 */
    OF_EVENT_ERR_NO_MEMORY = -16,               /* allocation failed: transient, retry */
} of_event_code;

/* A rejection: code plus a human reason (lowercase, no trailing period). */
typedef struct of_event_error {
    of_event_code code; /* OF_EVENT_OK when nothing failed */
    char reason[256];   /* e.g. missing header "ce_id"; "" when code is OF_EVENT_OK */
} of_event_error;

/* How the event arrived. */
typedef enum of_event_mode {
    OF_EVENT_MODE_BINARY = 1,     /* attributes in ce_ headers, value = data */
    OF_EVENT_MODE_STRUCTURED = 2, /* value = whole event as JSON */
} of_event_mode;

/* A parsed, validated event. Strings are NUL terminated; absent optional
 * attributes are "" with their has_ flag false. The trace context is the
 * distributed tracing extension (trace.h): has_trace only for a valid
 * traceparent, and an invalid one (or tracestate) is ignored, never a
 * rejection. */
typedef struct of_event {
    of_event_mode mode;                           /* binary or structured */
    char specversion[8];                          /* always "1.0" */
    char id[OF_EVENT_ID_MAX + 1];                 /* ce_id: the idempotency key */
    char type[OF_EVENT_TYPE_MAX + 1];             /* ce_type */
    char source[OF_EVENT_SOURCE_MAX + 1];         /* ce_source */
    bool has_subject;                             /* ce_subject was present */
    char subject[OF_EVENT_SUBJECT_MAX + 1];       /* ce_subject, or "" */
    bool has_time;                                /* ce_time was present */
    char time[OF_EVENT_TIME_MAX + 1];             /* ce_time as given (validated), or "" */
    char datacontenttype[OF_EVENT_CTYPE_MAX + 1]; /* content type of data, as given */
    bool has_trace;                               /* a valid traceparent was present */
    of_trace trace;                               /* its trace-id, parent-id (the sender's span)
                                                     and flags; zeroed without has_trace */
    char tracestate[OF_TRACESTATE_MAX + 1];       /* tracestate (with a traceparent), or "" */
    cJSON *data;                                  /* the data object; owned, see of_event_free() */
} of_event;

/* Stable machine-readable name of a code, e.g. "MISSING_ATTRIBUTE"; "OK" for
 * 0 and "UNKNOWN" for anything else. Never NULL. */
const char *of_event_code_name(int code);
/* True for codes worth retrying (only OF_EVENT_ERR_NO_MEMORY); every other
 * rejection is permanent and belongs in the dead-letter topic. */
bool of_event_code_transient(int code);

/* Parses rec into ev. On success returns 0, ev->data is set and the caller
 * must call of_event_free(ev). On failure returns the (negative) code, fills
 * err (may be NULL) and leaves ev zeroed with nothing to free; calling
 * of_event_free() on it anyway is harmless. */
int of_event_parse(const of_record_view *rec, of_event *ev, of_event_error *err)
    __attribute__((warn_unused_result));
/* Releases ev->data and zeroes ev. Accepts NULL and zeroed events. */
void of_event_free(of_event *ev);

/* Attributes of an event to build; every pointer is only read. */
typedef struct of_event_attrs {
    const char *id;      /* ce_id, id rules */
    const char *type;    /* ce_type */
    const char *source;  /* ce_source, e.g. "orderflow/widget-worker" */
    const char *subject; /* ce_subject (the entity it is about), or NULL */
    const char *time;    /* ce_time (RFC 3339), or NULL for now (UTC, milliseconds) */
} of_event_attrs;

/* Fills out (which must be zeroed: of_message m = {0}) with a binary-mode
 * event: topic, key (NULL for none), id = attrs->id, value = data printed
 * without formatting, headers ce_specversion, ce_id, ce_type, ce_source,
 * ce_time, ce_subject (when given), content-type application/json. data must
 * be an object and is only read. Returns 0 (the caller then owns out and
 * releases it with of_message_free()) or a negative code with err filled and
 * out left zeroed: an attribute that of_event_parse() would reject, data that
 * is no object, a value over OF_EVENT_VALUE_MAX, or no memory. */
int of_event_build(of_message *out, const char *topic, const char *key, const of_event_attrs *attrs,
                   const cJSON *data, of_event_error *err) __attribute__((warn_unused_result));

/* --- helpers shared with contract.c and the workers ----------------------- */

/* Fills err (may be NULL) with code and a printf-formatted reason, returns code. */
int of_event_error_set(of_event_error *err, of_event_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* True when text is 1..OF_EVENT_ID_MAX characters of [A-Za-z0-9._:-]. */
bool of_event_id_valid(const char *text);

/* True when text is an RFC 3339 date-time: YYYY-MM-DDTHH:MM:SS[.frac](Z|+hh:mm|-hh:mm),
 * 'T' and 'Z' in either case, 1..9 fraction digits, real calendar dates,
 * second 60 allowed (leap second), at most OF_EVENT_TIME_MAX characters. */
bool of_event_time_valid(const char *text);
/* Parses an RFC 3339 time (as of_event_time_valid() accepts) into
 * milliseconds since 1970-01-01T00:00:00Z, fraction truncated, a leap second
 * counted as :59.999. Returns 0 or OF_EINVAL when text is not valid. */
int of_event_time_parse(const char *text, int64_t *unix_ms) __attribute__((warn_unused_result));
/* Formats unix_ms as RFC 3339 UTC with milliseconds, e.g.
 * 2026-11-25T04:00:00.123Z, into out. Returns 0 or OF_EINVAL when out of range
 * (years 0000..9999 only). */
int of_event_time_format(int64_t unix_ms, char out[OF_EVENT_TIME_MAX + 1])
    __attribute__((warn_unused_result));
/* Formats the current time (CLOCK_REALTIME) like of_event_time_format(). */
int of_event_time_now(char out[OF_EVENT_TIME_MAX + 1]) __attribute__((warn_unused_result));

/* "an object", "an array", "a string", "a number", "a boolean", "null" or
 * "invalid": what item is, for reasons such as "must be a string, not a number". */
const char *of_event_json_type_name(const cJSON *item);

/* The member name of object, read case-sensitively. Returns NULL when it is
 * absent or object is no object; sets *duplicate (may be NULL) when the name
 * appears more than once (and still returns the first). */
const cJSON *of_event_json_member(const cJSON *object, const char *name, bool *duplicate);

#endif
