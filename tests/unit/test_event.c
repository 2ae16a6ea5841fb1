/* test_event.c: unit tests of the CloudEvents envelope parser (its builder and RFC 3339 helpers:
 * test_event_build.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "orderflow/event.h"

/* A header from a string literal (the literal may contain NULs). */
#define H(n, v)                                                                                    \
    {                                                                                              \
        (n), (v), sizeof(v) - 1                                                                    \
    }
#define MAX_HEADERS 12

#define H_SPEC   H("ce_specversion", "1.0")
#define H_ID     H("ce_id", "evt-1")
#define H_TYPE   H("ce_type", "order.created")
#define H_SOURCE H("ce_source", "shop/checkout")
#define H_TIME   H("ce_time", "2026-11-25T04:00:00.123Z")
#define H_CT     H("content-type", "application/json")
#define DATA     "{\"customer_id\":\"c1\"}"
#define STRUCTURED(body)                                                                           \
    "{\"specversion\":\"1.0\",\"id\":\"evt-1\",\"type\":\"order.created\",\"source\":"             \
    "\"shop\"," body "}"

/* One parse case: headers, value, and the expected code and exact reason. */
typedef struct parse_case {
    const char *name;                    /* what the case shows */
    of_header_view headers[MAX_HEADERS]; /* record headers; a NULL name ends the list */
    const char *value;                   /* value as a C string, or NULL for no value */
    int code;                            /* expected result */
    const char *reason;                  /* expected reason ("" for success) */
} parse_case;

static const parse_case parse_cases[] = {
    {"binary, every attribute", {H_SPEC, H_ID, H_TYPE, H_SOURCE, H_TIME, H_CT}, DATA, 0, ""},
    {"binary, no ce_time", {H_SPEC, H_ID, H_TYPE, H_SOURCE, H_CT}, DATA, 0, ""},
    {"binary, content type with parameters",
     {H_SPEC, H_ID, H_TYPE, H_SOURCE, H("content-type", " Application/JSON ; charset=utf-8")},
     DATA,
     0,
     ""},
    {"binary, content type header name in another case",
     {H_SPEC, H_ID, H_TYPE, H_SOURCE, H("Content-Type", "application/json")},
     DATA,
     0,
     ""},
    {"binary, extension and foreign headers ignored",
     {H("traceparent", "00-x\0y"), H_SPEC, H_ID, H("ce_traceid", "abc"), H_TYPE, H_SOURCE, H_CT},
     DATA,
     0,
     ""},
    {"binary, escaped backslash before u0000 is fine",
     {H_SPEC, H_ID, H_TYPE, H_SOURCE, H_CT},
     "{\"a\":\"\\\\u0000\"}",
     0,
     ""},
    /* missing attributes */
    {"missing ce_specversion",
     {H_ID, H_TYPE, H_SOURCE, H_CT},
     DATA,
     OF_EVENT_ERR_MISSING_ATTRIBUTE,
     "missing header \"ce_specversion\""},
    {"missing ce_id",
     {H_SPEC, H_TYPE, H_SOURCE, H_CT},
     DATA,
     OF_EVENT_ERR_MISSING_ATTRIBUTE,
     "missing header \"ce_id\""},
    {"missing ce_type",
     {H_SPEC, H_ID, H_SOURCE, H_CT},
     DATA,
     OF_EVENT_ERR_MISSING_ATTRIBUTE,
     "missing header \"ce_type\""},
    {"missing ce_source",
     {H_SPEC, H_ID, H_TYPE, H_CT},
     DATA,
     OF_EVENT_ERR_MISSING_ATTRIBUTE,
     "missing header \"ce_source\""},
    {"missing content-type",
     {H_SPEC, H_ID, H_TYPE, H_SOURCE},
     DATA,
     OF_EVENT_ERR_MISSING_ATTRIBUTE,
     "missing header \"content-type\""},
    {"no headers, plain JSON object",
     {{NULL, NULL, 0}},
     DATA,
     OF_EVENT_ERR_MISSING_ATTRIBUTE,
     "record has no \"ce_\" headers and no content type, and its value is not a structured "
     "event"},
    {"no headers, not JSON",
     {{NULL, NULL, 0}},
     "hello",
     OF_EVENT_ERR_MISSING_ATTRIBUTE,
     "record has no \"ce_\" headers and no content type, and its value is not a structured "
     "event"},
    /* specversion */
    {"specversion 0.3",
     {H("ce_specversion", "0.3"), H_ID, H_TYPE, H_SOURCE, H_CT},
     DATA,
     OF_EVENT_ERR_UNSUPPORTED_SPECVERSION,
     "header \"ce_specversion\" must be \"1.0\""},
    {"specversion 1.0 with trailing space",
     {H("ce_specversion", "1.0 "), H_ID, H_TYPE, H_SOURCE, H_CT},
     DATA,
     OF_EVENT_ERR_UNSUPPORTED_SPECVERSION,
     "header \"ce_specversion\" must be \"1.0\""},
    /* ids */
    {"empty ce_id",
     {H_SPEC, H("ce_id", ""), H_TYPE, H_SOURCE, H_CT},
     DATA,
     OF_EVENT_ERR_INVALID_ID,
     "header \"ce_id\" is empty"},
    {"ce_id of 64 characters",
     {H_SPEC, H("ce_id", "0123456789012345678901234567890123456789012345678901234567890123"),
      H_TYPE, H_SOURCE, H_CT},
     DATA,
     0,
     ""},
    {"ce_id of 65 characters",
     {H_SPEC, H("ce_id", "01234567890123456789012345678901234567890123456789012345678901234"),
      H_TYPE, H_SOURCE, H_CT},
     DATA,
     OF_EVENT_ERR_INVALID_ID,
     "header \"ce_id\" has 65 characters, more than the limit of 64"},
    {"ce_id with a space",
     {H_SPEC, H("ce_id", "ab c"), H_TYPE, H_SOURCE, H_CT},
     DATA,
     OF_EVENT_ERR_INVALID_ID,
     "header \"ce_id\" contains a character outside [A-Za-z0-9._:-] at position 3"},
    {"ce_id with a NUL inside",
     {H_SPEC, H("ce_id", "ab\0c"), H_TYPE, H_SOURCE, H_CT},
     DATA,
     OF_EVENT_ERR_INVALID_ATTRIBUTE,
     "header \"ce_id\" contains a NUL byte"},
    {"ce_id with a NULL value",
     {H_SPEC, {"ce_id", NULL, 5}, H_TYPE, H_SOURCE, H_CT},
     DATA,
     OF_EVENT_ERR_INVALID_ID,
     "header \"ce_id\" is empty"},
    /* duplicates */
    {"duplicate ce_id",
     {H_SPEC, H_ID, H_TYPE, H_SOURCE, H("ce_id", "evt-2"), H_CT},
     DATA,
     OF_EVENT_ERR_INVALID_ATTRIBUTE,
     "duplicate header \"ce_id\""},
    {"duplicate ce_specversion with equal values",
     {H_SPEC, H_SPEC, H_ID, H_TYPE, H_SOURCE, H_CT},
     DATA,
     OF_EVENT_ERR_INVALID_ATTRIBUTE,
     "duplicate header \"ce_specversion\""},
    {"duplicate extension header",
     {H_SPEC, H("ce_x", "1"), H_ID, H_TYPE, H_SOURCE, H("ce_x", "2"), H_CT},
     DATA,
     OF_EVENT_ERR_INVALID_ATTRIBUTE,
     "duplicate extension header at position 6"},
    {"duplicate content-type in two spellings",
     {H_SPEC, H_ID, H_TYPE, H_SOURCE, H_CT, H("CONTENT-TYPE", "application/json")},
     DATA,
     OF_EVENT_ERR_INVALID_ATTRIBUTE,
     "duplicate header \"content-type\""},
    /* type, source, subject */
    {"ce_type with a colon",
     {H_SPEC, H_ID, H("ce_type", "order:created"), H_SOURCE, H_CT},
     DATA,
     OF_EVENT_ERR_INVALID_ATTRIBUTE,
     "header \"ce_type\" contains a character outside [A-Za-z0-9._-] at position 6"},
    {"empty ce_type",
     {H_SPEC, H_ID, H("ce_type", ""), H_SOURCE, H_CT},
     DATA,
     OF_EVENT_ERR_INVALID_ATTRIBUTE,
     "header \"ce_type\" is empty"},
    {"empty ce_source",
     {H_SPEC, H_ID, H_TYPE, H("ce_source", ""), H_CT},
     DATA,
     OF_EVENT_ERR_INVALID_ATTRIBUTE,
     "header \"ce_source\" is empty"},
    {"ce_source with a control character",
     {H_SPEC, H_ID, H_TYPE, H("ce_source", "shop\x01"), H_CT},
     DATA,
     OF_EVENT_ERR_INVALID_ATTRIBUTE,
     "header \"ce_source\" contains a character that is not printable ASCII at position 5"},
    {"ce_source with UTF-8",
     {H_SPEC, H_ID, H_TYPE, H("ce_source", "caf\xc3\xa9"), H_CT},
     DATA,
     OF_EVENT_ERR_INVALID_ATTRIBUTE,
     "header \"ce_source\" contains a character that is not printable ASCII at position 4"},
    {"empty ce_subject",
     {H_SPEC, H_ID, H_TYPE, H_SOURCE, H("ce_subject", ""), H_CT},
     DATA,
     OF_EVENT_ERR_INVALID_ATTRIBUTE,
     "header \"ce_subject\" is empty"},
    {"ce_subject with a NUL",
     {H_SPEC, H_ID, H_TYPE, H_SOURCE, H("ce_subject", "\0"), H_CT},
     DATA,
     OF_EVENT_ERR_INVALID_ATTRIBUTE,
     "header \"ce_subject\" contains a NUL byte"},
    /* time */
    {"ce_time with a space separator",
     {H_SPEC, H_ID, H_TYPE, H_SOURCE, H("ce_time", "2026-11-25 04:00:00Z"), H_CT},
     DATA,
     OF_EVENT_ERR_INVALID_TIME,
     "header \"ce_time\" is not an RFC 3339 date-time"},
    {"empty ce_time",
     {H_SPEC, H_ID, H_TYPE, H_SOURCE, H("ce_time", ""), H_CT},
     DATA,
     OF_EVENT_ERR_INVALID_TIME,
     "header \"ce_time\" is not an RFC 3339 date-time"},
    /* content types */
    {"content type text/plain",
     {H_SPEC, H_ID, H_TYPE, H_SOURCE, H("content-type", "text/plain")},
     DATA,
     OF_EVENT_ERR_UNSUPPORTED_CONTENT_TYPE,
     "header \"content-type\" must be application/json or application/cloudevents+json"},
    {"content type application/jsonx",
     {H_SPEC, H_ID, H_TYPE, H_SOURCE, H("content-type", "application/jsonx")},
     DATA,
     OF_EVENT_ERR_UNSUPPORTED_CONTENT_TYPE,
     "header \"content-type\" must be application/json or application/cloudevents+json"},
    {"empty content type",
     {H_SPEC, H_ID, H_TYPE, H_SOURCE, H("content-type", "")},
     DATA,
     OF_EVENT_ERR_INVALID_ATTRIBUTE,
     "header \"content-type\" is empty"},
    {"content type with a NUL",
     {H_SPEC, H_ID, H_TYPE, H_SOURCE, H("content-type", "application/json\0")},
     DATA,
     OF_EVENT_ERR_INVALID_ATTRIBUTE,
     "header \"content-type\" contains a NUL byte"},
    {"batched content mode",
     {H("content-type", "application/cloudevents-batch+json")},
     "[]",
     OF_EVENT_ERR_UNSUPPORTED_CONTENT_TYPE,
     "batched mode (application/cloudevents-batch+json) is not supported"},
    /* values */
    {"no value",
     {H_SPEC, H_ID, H_TYPE, H_SOURCE, H_CT},
     NULL,
     OF_EVENT_ERR_MALFORMED_JSON,
     "value is empty"},
    {"truncated JSON",
     {H_SPEC, H_ID, H_TYPE, H_SOURCE, H_CT},
     "{\"a\":",
     OF_EVENT_ERR_MALFORMED_JSON,
     "value is not valid JSON (near byte 6)"},
    {"bytes after the JSON",
     {H_SPEC, H_ID, H_TYPE, H_SOURCE, H_CT},
     "{} x",
     OF_EVENT_ERR_MALFORMED_JSON,
     "value has extra bytes after the JSON text at byte 4"},
    {"invalid UTF-8 in a string",
     {H_SPEC, H_ID, H_TYPE, H_SOURCE, H_CT},
     "{\"a\":\"\xc3\x28\"}",
     OF_EVENT_ERR_MALFORMED_JSON,
     "value is not valid UTF-8"},
    {"escaped NUL in a string",
     {H_SPEC, H_ID, H_TYPE, H_SOURCE, H_CT},
     "{\"customer_id\":\"c1\\u0000x\"}",
     OF_EVENT_ERR_MALFORMED_JSON,
     "value contains the escape \\u0000, which is not supported"},
    {"data is an array",
     {H_SPEC, H_ID, H_TYPE, H_SOURCE, H_CT},
     "[1]",
     OF_EVENT_ERR_DATA_NOT_OBJECT,
     "value must be a JSON object, not an array"},
    {"data is null",
     {H_SPEC, H_ID, H_TYPE, H_SOURCE, H_CT},
     " null ",
     OF_EVENT_ERR_DATA_NOT_OBJECT,
     "value must be a JSON object, not null"},
    /* structured mode */
    {"structured",
     {H("content-type", "application/cloudevents+json")},
     STRUCTURED("\"time\":\"2026-11-25T04:00:00Z\",\"subject\":\"o1\",\"data\":{\"a\":1}"),
     0,
     ""},
    {"structured without content type", {{NULL, NULL, 0}}, STRUCTURED("\"data\":{}"), 0, ""},
    {"structured ignores ce_ headers",
     {H("ce_id", "\0bad"), H("ce_type", ""), H("content-type", "application/cloudevents+json")},
     STRUCTURED("\"data\":{}"),
     0,
     ""},
    {"structured, duplicate ce_ headers still rejected",
     {H("ce_id", "a"), H("ce_id", "a"), H("content-type", "application/cloudevents+json")},
     STRUCTURED("\"data\":{}"),
     OF_EVENT_ERR_INVALID_ATTRIBUTE,
     "duplicate header \"ce_id\""},
    {"structured, null optional attributes",
     {H("content-type", "application/cloudevents+json")},
     STRUCTURED("\"time\":null,\"subject\":null,\"datacontenttype\":null,\"data\":{}"),
     0,
     ""},
    {"structured, missing id",
     {H("content-type", "application/cloudevents+json")},
     "{\"specversion\":\"1.0\",\"type\":\"t\",\"source\":\"s\",\"data\":{}}",
     OF_EVENT_ERR_MISSING_ATTRIBUTE,
     "missing attribute \"id\""},
    {"structured, id is a number",
     {H("content-type", "application/cloudevents+json")},
     "{\"specversion\":\"1.0\",\"id\":7,\"type\":\"t\",\"source\":\"s\",\"data\":{}}",
     OF_EVENT_ERR_INVALID_ATTRIBUTE,
     "attribute \"id\" must be a string, not a number"},
    {"structured, id twice",
     {H("content-type", "application/cloudevents+json")},
     STRUCTURED("\"id\":\"evt-2\",\"data\":{}"),
     OF_EVENT_ERR_MALFORMED_JSON,
     "duplicate attribute \"id\""},
    {"structured, specversion 0.3",
     {H("content-type", "application/cloudevents+json")},
     "{\"specversion\":\"0.3\",\"id\":\"e\",\"type\":\"t\",\"source\":\"s\",\"data\":{}}",
     OF_EVENT_ERR_UNSUPPORTED_SPECVERSION,
     "attribute \"specversion\" must be \"1.0\""},
    {"structured, bad time",
     {H("content-type", "application/cloudevents+json")},
     STRUCTURED("\"time\":\"yesterday\",\"data\":{}"),
     OF_EVENT_ERR_INVALID_TIME,
     "attribute \"time\" is not an RFC 3339 date-time"},
    {"structured, missing data",
     {H("content-type", "application/cloudevents+json")},
     STRUCTURED("\"x\":1"),
     OF_EVENT_ERR_MISSING_ATTRIBUTE,
     "missing attribute \"data\""},
    {"structured, data is a string",
     {H("content-type", "application/cloudevents+json")},
     STRUCTURED("\"data\":\"{}\""),
     OF_EVENT_ERR_DATA_NOT_OBJECT,
     "attribute \"data\" must be a JSON object, not a string"},
    {"structured, data_base64 holding the JSON data is decoded",
     {H("content-type", "application/cloudevents+json")},
     STRUCTURED("\"data_base64\":\"eyJjdXN0b21lcl9pZCI6ImMxIn0=\""),
     0,
     ""},
    {"structured, data_base64 with an explicit JSON content type",
     {H("content-type", "application/cloudevents+json")},
     STRUCTURED("\"datacontenttype\":\"application/json\",\"data_base64\":\"e30=\""),
     0,
     ""},
    {"structured, data and data_base64",
     {H("content-type", "application/cloudevents+json")},
     STRUCTURED("\"data\":{},\"data_base64\":\"e30=\""),
     OF_EVENT_ERR_INVALID_ATTRIBUTE,
     "attributes \"data\" and \"data_base64\" exclude each other"},
    {"structured, data_base64 twice",
     {H("content-type", "application/cloudevents+json")},
     STRUCTURED("\"data_base64\":\"e30=\",\"data_base64\":\"e30=\""),
     OF_EVENT_ERR_MALFORMED_JSON,
     "duplicate attribute \"data_base64\""},
    {"structured, data_base64 not base64",
     {H("content-type", "application/cloudevents+json")},
     STRUCTURED("\"data_base64\":\"e30\""),
     OF_EVENT_ERR_INVALID_ATTRIBUTE,
     "attribute \"data_base64\" is not base64"},
    {"structured, data_base64 a number",
     {H("content-type", "application/cloudevents+json")},
     STRUCTURED("\"data_base64\":7"),
     OF_EVENT_ERR_INVALID_ATTRIBUTE,
     "attribute \"data_base64\" must be a string, not a number"},
    {"structured, data_base64 of an array",
     {H("content-type", "application/cloudevents+json")},
     STRUCTURED("\"data_base64\":\"W10=\""),
     OF_EVENT_ERR_DATA_NOT_OBJECT,
     "decoded \"data_base64\" must be a JSON object, not an array"},
    {"structured, data_base64 of broken JSON",
     {H("content-type", "application/cloudevents+json")},
     STRUCTURED("\"data_base64\":\"ew==\""),
     OF_EVENT_ERR_MALFORMED_JSON,
     "decoded \"data_base64\" is not valid JSON (near byte 2)"},
    {"structured, data_base64 of bytes that are not UTF-8",
     {H("content-type", "application/cloudevents+json")},
     STRUCTURED("\"data_base64\":\"/w==\""),
     OF_EVENT_ERR_MALFORMED_JSON,
     "decoded \"data_base64\" is not valid UTF-8"},
    {"structured, data_base64 of XML data",
     {H("content-type", "application/cloudevents+json")},
     STRUCTURED("\"datacontenttype\":\"text/xml\",\"data_base64\":\"PGEvPg==\""),
     OF_EVENT_ERR_UNSUPPORTED_CONTENT_TYPE,
     "attribute \"datacontenttype\" must be application/json"},
    /* the CloudEvents SDKs' structured mode: the data's content type, no ce_ headers */
    {"structured under content-type application/json (the SDKs' structured mode)",
     {H_CT},
     STRUCTURED("\"datacontenttype\":\"application/json\",\"data\":{\"customer_id\":\"c1\"}"),
     0,
     ""},
    {"structured under another content type, data_base64",
     {H("content-type", "application/octet-stream")},
     STRUCTURED("\"data_base64\":\"e30=\""),
     0,
     ""},
    {"structured under application/json with ce_ extension headers",
     {H_CT, H("ce_traceparent", "00-ab")},
     STRUCTURED("\"data\":{}"),
     0,
     ""},
    {"with a ce_specversion header the value is binary data, not an envelope",
     {H_SPEC, H_CT},
     STRUCTURED("\"data\":{}"),
     OF_EVENT_ERR_MISSING_ATTRIBUTE,
     "missing header \"ce_id\""},
    {"application/json object without specversion: binary, missing ce_specversion",
     {H_CT},
     DATA,
     OF_EVENT_ERR_MISSING_ATTRIBUTE,
     "missing header \"ce_specversion\""},
    {"application/json that is not JSON: binary, missing ce_specversion",
     {H_CT},
     "{\"specversion\":",
     OF_EVENT_ERR_MISSING_ATTRIBUTE,
     "missing header \"ce_specversion\""},
    {"application/json array holding specversion: binary, missing ce_specversion",
     {H_CT},
     "[{\"specversion\":\"1.0\"}]",
     OF_EVENT_ERR_MISSING_ATTRIBUTE,
     "missing header \"ce_specversion\""},
    {"structured, XML data",
     {H("content-type", "application/cloudevents+json")},
     STRUCTURED("\"datacontenttype\":\"text/xml\",\"data\":{}"),
     OF_EVENT_ERR_UNSUPPORTED_CONTENT_TYPE,
     "attribute \"datacontenttype\" must be application/json"},
    {"structured, an array",
     {H("content-type", "application/cloudevents+json")},
     "[]",
     OF_EVENT_ERR_MALFORMED_JSON,
     "structured event must be a JSON object, not an array"},
};

static size_t count_headers(const of_header_view *h)
{
    size_t n = 0;
    while (n < MAX_HEADERS && h[n].name != NULL)
        n++;
    return n;
}

static void test_parse_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof parse_cases / sizeof parse_cases[0]; i++) {
        const parse_case *c = &parse_cases[i];
        of_record_view rec = {.topic = "order.created",
                              .partition = 0,
                              .offset = (int64_t)i,
                              .value = c->value,
                              .value_len = c->value != NULL ? strlen(c->value) : 0,
                              .headers = c->headers,
                              .n_headers = count_headers(c->headers)};
        of_event ev;
        of_event_error err;
        int rc = of_event_parse(&rec, &ev, &err);
        if (rc != c->code || strcmp(err.reason, c->reason) != 0)
            print_error("case \"%s\": got %d %s \"%s\", want %d \"%s\"\n", c->name, rc,
                        of_event_code_name(rc), err.reason, c->code, c->reason);
        assert_int_equal(rc, c->code);
        assert_int_equal(err.code, c->code);
        assert_string_equal(err.reason, c->reason);
        if (rc == 0) {
            assert_non_null(ev.data);
            assert_true(cJSON_IsObject(ev.data));
            assert_string_equal(ev.specversion, "1.0");
        } else {
            assert_null(ev.data);
        }
        of_event_free(&ev);
        assert_null(ev.data);
    }
}

static void test_parse_binary_fields(void **state)
{
    (void)state;
    const of_header_view h[] = {H_SPEC, H_ID, H_TYPE, H_SOURCE, H("ce_subject", "o-1"),
                                H_TIME, H_CT};
    of_record_view rec = {.value = DATA, .value_len = strlen(DATA), .headers = h, .n_headers = 7};
    of_event ev;
    of_event_error err;

    assert_int_equal(of_event_parse(&rec, &ev, &err), 0);
    assert_int_equal(err.code, OF_EVENT_OK);
    assert_int_equal(ev.mode, OF_EVENT_MODE_BINARY);
    assert_string_equal(ev.id, "evt-1");
    assert_string_equal(ev.type, "order.created");
    assert_string_equal(ev.source, "shop/checkout");
    assert_true(ev.has_subject);
    assert_string_equal(ev.subject, "o-1");
    assert_true(ev.has_time);
    assert_string_equal(ev.time, "2026-11-25T04:00:00.123Z");
    assert_string_equal(ev.datacontenttype, "application/json");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(ev.data, "customer_id")->valuestring,
                        "c1");
    of_event_free(&ev);

    /* Without the optional attributes. */
    const of_header_view h2[] = {H_SPEC, H_ID, H_TYPE, H_SOURCE, H_CT};
    rec.headers = h2;
    rec.n_headers = 5;
    assert_int_equal(of_event_parse(&rec, &ev, &err), 0);
    assert_false(ev.has_subject);
    assert_string_equal(ev.subject, "");
    assert_false(ev.has_time);
    assert_string_equal(ev.time, "");
    of_event_free(&ev);
}

static void test_parse_structured_fields(void **state)
{
    (void)state;
    const char *value = STRUCTURED("\"subject\":\"o-9\",\"time\":\"2026-01-02T03:04:05+01:00\","
                                   "\"datacontenttype\":\"application/json; charset=utf-8\","
                                   "\"data\":{\"customer_id\":\"c7\"},\"ext\":true");
    const of_header_view h[] = {H("content-type", "application/cloudevents+json; charset=utf-8")};
    of_record_view rec = {.value = value, .value_len = strlen(value), .headers = h, .n_headers = 1};
    of_event ev;
    of_event_error err;

    assert_int_equal(of_event_parse(&rec, &ev, &err), 0);
    assert_int_equal(ev.mode, OF_EVENT_MODE_STRUCTURED);
    assert_string_equal(ev.id, "evt-1");
    assert_string_equal(ev.type, "order.created");
    assert_string_equal(ev.source, "shop");
    assert_string_equal(ev.subject, "o-9");
    assert_string_equal(ev.time, "2026-01-02T03:04:05+01:00");
    assert_string_equal(ev.datacontenttype, "application/json; charset=utf-8");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(ev.data, "customer_id")->valuestring,
                        "c7");
    /* data is detached: the rest of the envelope is gone, data stands alone */
    assert_null(ev.data->next);
    assert_null(ev.data->prev);
    of_event_free(&ev);

    /* The CloudEvents SDKs' structured mode: the data's content type and no
     * ce_ headers; data_base64 decoded. */
    const char *sdk = STRUCTURED("\"datacontenttype\":\"application/json\","
                                 "\"data_base64\":\"eyJjdXN0b21lcl9pZCI6ImMxIn0=\"");
    const of_header_view hj[] = {H_CT};
    rec.value = sdk;
    rec.value_len = strlen(sdk);
    rec.headers = hj;
    assert_int_equal(of_event_parse(&rec, &ev, &err), 0);
    assert_int_equal(ev.mode, OF_EVENT_MODE_STRUCTURED);
    assert_string_equal(ev.id, "evt-1");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(ev.data, "customer_id")->valuestring,
                        "c1");
    of_event_free(&ev);
    rec.headers = h;

    /* datacontenttype defaults to application/json */
    const char *plain = STRUCTURED("\"data\":{}");
    rec.value = plain;
    rec.value_len = strlen(plain);
    assert_int_equal(of_event_parse(&rec, &ev, &err), 0);
    assert_string_equal(ev.datacontenttype, "application/json");
    assert_false(ev.has_time);
    of_event_free(&ev);
}

/* A value of exactly len bytes: an object with one string padded to size. */
static char *object_of_size(size_t len)
{
    char *v = malloc(len + 1);
    assert_non_null(v);
    memset(v, 'x', len);
    memcpy(v, "{\"pad\":\"", 8);
    v[len - 2] = '"';
    v[len - 1] = '}';
    v[len] = '\0';
    return v;
}

static void test_value_size_limit(void **state)
{
    (void)state;
    const of_header_view h[] = {H_SPEC, H_ID, H_TYPE, H_SOURCE, H_CT};
    of_event ev;
    of_event_error err;
    char *at = object_of_size(65536), *over = object_of_size(65537);
    of_record_view rec = {.value = at, .value_len = 65536, .headers = h, .n_headers = 5};

    assert_int_equal(of_event_parse(&rec, &ev, &err), 0);
    assert_int_equal(strlen(cJSON_GetObjectItemCaseSensitive(ev.data, "pad")->valuestring),
                     65536 - 10);
    of_event_free(&ev);

    rec.value = over;
    rec.value_len = 65537;
    assert_int_equal(of_event_parse(&rec, &ev, &err), OF_EVENT_ERR_VALUE_TOO_LARGE);
    assert_string_equal(err.reason, "value is 65537 bytes, more than the limit of 65536");
    assert_null(ev.data);

    rec.value_len = 70000; /* the limit is checked before anything is read */
    assert_int_equal(of_event_parse(&rec, &ev, &err), OF_EVENT_ERR_VALUE_TOO_LARGE);
    assert_string_equal(err.reason, "value is 70000 bytes, more than the limit of 65536");
    free(at);
    free(over);
}

static void test_value_not_nul_terminated(void **state)
{
    (void)state;
    /* The value is exactly "{}" followed by bytes that are not part of it. */
    const char buf[] = "{}garbage";
    const of_header_view h[] = {H_SPEC, H_ID, H_TYPE, H_SOURCE, H_CT};
    of_record_view rec = {.value = buf, .value_len = 2, .headers = h, .n_headers = 5};
    of_event ev;
    of_event_error err;
    assert_int_equal(of_event_parse(&rec, &ev, &err), 0);
    of_event_free(&ev);

    /* A NUL inside the value is not whitespace. */
    const char nul[] = "{}\0";
    rec.value = nul;
    rec.value_len = 3;
    assert_int_equal(of_event_parse(&rec, &ev, &err), OF_EVENT_ERR_MALFORMED_JSON);
    assert_string_equal(err.reason, "value has extra bytes after the JSON text at byte 3");
}

static void test_too_many_ce_headers(void **state)
{
    (void)state;
    of_header_view h[70];
    char names[70][16];
    of_event ev;
    of_event_error err;

    for (int i = 0; i < 70; i++) {
        snprintf(names[i], sizeof names[i], "ce_x%d", i);
        h[i] = (of_header_view){names[i], "1", 1};
    }
    of_record_view rec = {.value = DATA, .value_len = strlen(DATA), .headers = h, .n_headers = 64};
    /* 64 extension headers only: fine as far as the count goes, then ce_specversion is missing */
    assert_int_equal(of_event_parse(&rec, &ev, &err), OF_EVENT_ERR_MISSING_ATTRIBUTE);
    assert_string_equal(err.reason, "missing header \"ce_specversion\"");
    rec.n_headers = 65;
    assert_int_equal(of_event_parse(&rec, &ev, &err), OF_EVENT_ERR_INVALID_ATTRIBUTE);
    assert_string_equal(err.reason, "record has more than 64 \"ce_\" headers");
}

static void test_parse_null_arguments(void **state)
{
    (void)state;
    of_event ev;
    of_event_error err;
    assert_int_equal(of_event_parse(NULL, &ev, &err), OF_EVENT_ERR_MISSING_ATTRIBUTE);
    assert_string_equal(err.reason, "could not parse event: no record");
    of_record_view rec = {0};
    /* err may be NULL */
    assert_int_equal(of_event_parse(&rec, &ev, NULL), OF_EVENT_ERR_MISSING_ATTRIBUTE);
    of_event_free(NULL);
}

static void test_code_names(void **state)
{
    (void)state;
    static const struct {
        int code;         /* code */
        const char *name; /* its stable name */
    } names[] = {
        {OF_EVENT_OK, "OK"},
        {OF_EVENT_ERR_VALUE_TOO_LARGE, "VALUE_TOO_LARGE"},
        {OF_EVENT_ERR_MALFORMED_JSON, "MALFORMED_JSON"},
        {OF_EVENT_ERR_MISSING_ATTRIBUTE, "MISSING_ATTRIBUTE"},
        {OF_EVENT_ERR_INVALID_ATTRIBUTE, "INVALID_ATTRIBUTE"},
        {OF_EVENT_ERR_UNSUPPORTED_SPECVERSION, "UNSUPPORTED_SPECVERSION"},
        {OF_EVENT_ERR_UNSUPPORTED_CONTENT_TYPE, "UNSUPPORTED_CONTENT_TYPE"},
        {OF_EVENT_ERR_DATA_NOT_OBJECT, "DATA_NOT_OBJECT"},
        {OF_EVENT_ERR_MISSING_FIELD, "MISSING_FIELD"},
        {OF_EVENT_ERR_WRONG_TYPE, "WRONG_TYPE"},
        {OF_EVENT_ERR_OUT_OF_RANGE, "OUT_OF_RANGE"},
        {OF_EVENT_ERR_INVALID_ID, "INVALID_ID"},
        {OF_EVENT_ERR_TOO_MANY_ITEMS, "TOO_MANY_ITEMS"},
        {OF_EVENT_ERR_UNKNOWN_TYPE, "UNKNOWN_TYPE"},
        {OF_EVENT_ERR_INVALID_STATUS, "INVALID_STATUS"},
        {OF_EVENT_ERR_INVALID_TIME, "INVALID_TIME"},
        {OF_EVENT_ERR_NO_MEMORY, "OUT_OF_MEMORY"},
        {-17, "UNKNOWN"},
        {1, "UNKNOWN"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        assert_string_equal(of_event_code_name(names[i].code), names[i].name);
    assert_true(of_event_code_transient(OF_EVENT_ERR_NO_MEMORY));
    assert_false(of_event_code_transient(OF_EVENT_ERR_MALFORMED_JSON));
    assert_false(of_event_code_transient(OF_EVENT_OK));
}

static void test_ids_and_utf8(void **state)
{
    (void)state;
    assert_true(of_event_id_valid("a"));
    assert_true(of_event_id_valid("Order_1.2:3-x"));
    assert_true(
        of_event_id_valid("0123456789012345678901234567890123456789012345678901234567890123"));
    assert_false(
        of_event_id_valid("01234567890123456789012345678901234567890123456789012345678901234"));
    assert_false(of_event_id_valid(""));
    assert_false(of_event_id_valid(NULL));
    assert_false(of_event_id_valid("a/b"));
    assert_false(of_event_id_valid("caf\xc3\xa9"));

    static const struct {
        const char *s; /* bytes */
        bool valid;    /* expected */
    } u[] = {
        {"plain", true},
        {"caf\xc3\xa9", true},
        {"\xe2\x82\xac", true},
        {"\xf0\x9f\x98\x80", true},
        {"\xf4\x8f\xbf\xbf", true},
        {"\xc3", false},
        {"\xc0\xaf", false},
        {"\xe0\x80\xaf", false},
        {"\xed\xa0\x80", false},
        {"\xf4\x90\x80\x80", false},
        {"\xf8\x88\x80\x80\x80", false},
        {"\xe2\x82", false},
        {"\x80", false},
    };
    for (size_t i = 0; i < sizeof u / sizeof u[0]; i++)
        assert_int_equal(of_utf8_valid(u[i].s, strlen(u[i].s)), u[i].valid);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_table),
        cmocka_unit_test(test_parse_binary_fields),
        cmocka_unit_test(test_parse_structured_fields),
        cmocka_unit_test(test_value_size_limit),
        cmocka_unit_test(test_value_not_nul_terminated),
        cmocka_unit_test(test_too_many_ce_headers),
        cmocka_unit_test(test_parse_null_arguments),
        cmocka_unit_test(test_code_names),
        cmocka_unit_test(test_ids_and_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
