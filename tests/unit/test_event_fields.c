/* test_event_fields.c: unit tests of the CloudEvents envelope parser beyond its table of cases
 * (test_event.c): the fields of a parsed event in binary and structured mode, the value and header
 * limits, NULL arguments, the stable code names, and the id and UTF-8 checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "orderflow/event.h"
#include "event_fixture.h"

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
        cmocka_unit_test(test_parse_binary_fields), cmocka_unit_test(test_parse_structured_fields),
        cmocka_unit_test(test_value_size_limit),    cmocka_unit_test(test_value_not_nul_terminated),
        cmocka_unit_test(test_too_many_ce_headers), cmocka_unit_test(test_parse_null_arguments),
        cmocka_unit_test(test_code_names),          cmocka_unit_test(test_ids_and_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
