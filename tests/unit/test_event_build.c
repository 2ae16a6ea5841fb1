/* test_event_build.c: unit tests of the CloudEvents builder (of_event_build, read back through
 * the parser) and the RFC 3339 helpers; the parser's own cases are test_event.c and
 * test_event_fields.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "orderflow/event.h"
#include "orderflow/message.h"

static void test_rfc3339(void **state)
{
    (void)state;
    static const struct {
        const char *text; /* input */
        bool valid;       /* expected of_event_time_valid() */
        int64_t ms;       /* expected of_event_time_parse() when valid */
    } cases[] = {
        {"1970-01-01T00:00:00Z", true, 0},
        {"1970-01-01t00:00:00z", true, 0},
        {"1970-01-01T01:00:00+01:00", true, 0},
        {"1969-12-31T19:00:00-05:00", true, 0},
        {"1969-12-31T23:59:59.999Z", true, -1},
        {"2026-11-25T04:00:00.123Z", true, 1795579200123},
        {"2026-11-25T04:00:00.1Z", true, 1795579200100},
        {"2026-11-25T04:00:00.123456789+00:00", true, 1795579200123},
        {"2024-02-29T23:59:59Z", true, 1709251199000},
        {"2024-02-29T23:59:60Z", true, 1709251199999}, /* leap second */
        {"2000-02-29T00:00:00Z", true, 951782400000},
        {"0000-01-01T00:00:00Z", true, -62167219200000},
        {"9999-12-31T23:59:59.999-23:59", true, 253402387139999},
        {"2026-11-25 04:00:00Z", false, 0},
        {"2026-11-25T04:00:00", false, 0},
        {"2026-11-25", false, 0},
        {"", false, 0},
        {"2025-02-29T00:00:00Z", false, 0},
        {"1900-02-29T00:00:00Z", false, 0},
        {"2026-13-01T00:00:00Z", false, 0},
        {"2026-00-01T00:00:00Z", false, 0},
        {"2026-11-31T00:00:00Z", false, 0},
        {"2026-11-00T00:00:00Z", false, 0},
        {"2026-11-25T24:00:00Z", false, 0},
        {"2026-11-25T04:60:00Z", false, 0},
        {"2026-11-25T04:00:61Z", false, 0},
        {"2026-11-25T04:00:00.Z", false, 0},
        {"2026-11-25T04:00:00.1234567890Z", false, 0},
        {"2026-11-25T04:00:00+0530", false, 0},
        {"2026-11-25T04:00:00+24:00", false, 0},
        {"2026-11-25T04:00:00+05:60", false, 0},
        {"2026-11-25T04:00:00+05:30x", false, 0},
        {"2026-11-25T04:00:00Zx", false, 0},
        {"2026-1-25T04:00:00Z", false, 0},
        {"+026-11-25T04:00:00Z", false, 0},
        {"2026-11-25T4:00:00Z", false, 0},
        {"2026-11-25T04:00:00.12a3Z", false, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t ms = 42;
        if (of_event_time_valid(cases[i].text) != cases[i].valid)
            print_error("case \"%s\"\n", cases[i].text);
        assert_int_equal(of_event_time_valid(cases[i].text), cases[i].valid);
        if (cases[i].valid) {
            assert_int_equal(of_event_time_parse(cases[i].text, &ms), 0);
            assert_int_equal(ms, cases[i].ms);
        } else {
            assert_int_equal(of_event_time_parse(cases[i].text, &ms), OF_EINVAL);
            assert_int_equal(ms, 42);
        }
    }
    assert_false(of_event_time_valid(NULL));
}

static void test_time_format(void **state)
{
    (void)state;
    char out[OF_EVENT_TIME_MAX + 1];
    int64_t back;

    assert_int_equal(of_event_time_format(0, out), 0);
    assert_string_equal(out, "1970-01-01T00:00:00.000Z");
    assert_int_equal(of_event_time_format(-1, out), 0);
    assert_string_equal(out, "1969-12-31T23:59:59.999Z");
    assert_int_equal(of_event_time_format(1795579200123, out), 0);
    assert_string_equal(out, "2026-11-25T04:00:00.123Z");
    assert_int_equal(of_event_time_format(951782400000, out), 0);
    assert_string_equal(out, "2000-02-29T00:00:00.000Z");
    assert_int_equal(of_event_time_format(-62167219200000, out), 0);
    assert_string_equal(out, "0000-01-01T00:00:00.000Z");
    assert_int_equal(of_event_time_format(253402300799999, out), 0);
    assert_string_equal(out, "9999-12-31T23:59:59.999Z");
    assert_int_equal(of_event_time_format(253402300800000, out), OF_EINVAL);
    assert_int_equal(of_event_time_format(-62167219200001, out), OF_EINVAL);

    /* format and parse are inverses over the whole range */
    for (int64_t ms = -62167219200000; ms <= 253402300799999; ms += 7777777777) {
        assert_int_equal(of_event_time_format(ms, out), 0);
        assert_true(of_event_time_valid(out));
        assert_int_equal(of_event_time_parse(out, &back), 0);
        assert_int_equal(back, ms);
    }

    assert_int_equal(of_event_time_now(out), 0);
    assert_int_equal(strlen(out), 24);
    assert_true(of_event_time_valid(out));
    assert_int_equal(out[23], 'Z');
    assert_int_equal(out[19], '.');
    assert_int_equal(of_event_time_parse(out, &back), 0);
    assert_true(back > 1767225600000); /* after 2026-01-01 */
}

static const of_header *find_header(const of_message *m, const char *name)
{
    for (size_t i = 0; i < m->n_headers; i++) {
        if (strcmp(m->headers[i].name, name) == 0)
            return &m->headers[i];
    }
    return NULL;
}

/* Parses a built message back through the consumer path. */
static int parse_message(const of_message *m, of_event *ev, of_event_error *err)
{
    of_header_view h[16];
    assert_true(m->n_headers <= 16);
    for (size_t i = 0; i < m->n_headers; i++)
        h[i] = (of_header_view){m->headers[i].name, m->headers[i].value, m->headers[i].len};
    of_record_view rec = {.topic = m->topic,
                          .partition = -1,
                          .offset = -1,
                          .key = m->key,
                          .key_len = m->key_len,
                          .value = m->value,
                          .value_len = m->value_len,
                          .headers = h,
                          .n_headers = m->n_headers};
    return of_event_parse(&rec, ev, err);
}

static void test_build_round_trip(void **state)
{
    (void)state;
    of_message m = {0};
    of_event ev;
    of_event_error err;
    cJSON *data = cJSON_Parse("{\"order_id\":\"0190a0b0-0000-7000-8000-000000000001\","
                              "\"status\":\"CONFIRMED\",\"note\":\"caf\xc3\xa9 \\\"q\\\"\"}");
    of_event_attrs attrs = {.id = "evt-42",
                            .type = "order.status.changed",
                            .source = "orderflow/order-status",
                            .subject = "0190a0b0-0000-7000-8000-000000000001",
                            .time = "2026-11-25T04:00:00.123Z"};

    assert_non_null(data);
    assert_int_equal(of_event_build(&m, "order.status", "0190a0b0-0000-7000-8000-000000000001",
                                    &attrs, data, &err),
                     0);
    assert_string_equal(m.topic, "order.status");
    assert_string_equal(m.id, "evt-42");
    assert_string_equal(m.key, "0190a0b0-0000-7000-8000-000000000001");
    assert_int_equal(m.key_len, 36);
    assert_int_equal(m.value_len, strlen(m.value));
    assert_string_equal(m.value, "{\"order_id\":\"0190a0b0-0000-7000-8000-000000000001\","
                                 "\"status\":\"CONFIRMED\",\"note\":\"caf\xc3\xa9 \\\"q\\\"\"}");
    assert_int_equal(m.n_headers, 7);
    assert_string_equal(find_header(&m, "ce_specversion")->value, "1.0");
    assert_string_equal(find_header(&m, "ce_id")->value, "evt-42");
    assert_string_equal(find_header(&m, "ce_type")->value, "order.status.changed");
    assert_string_equal(find_header(&m, "ce_source")->value, "orderflow/order-status");
    assert_string_equal(find_header(&m, "ce_time")->value, "2026-11-25T04:00:00.123Z");
    assert_string_equal(find_header(&m, "ce_subject")->value,
                        "0190a0b0-0000-7000-8000-000000000001");
    assert_string_equal(find_header(&m, "content-type")->value, "application/json");

    assert_int_equal(parse_message(&m, &ev, &err), 0);
    assert_int_equal(ev.mode, OF_EVENT_MODE_BINARY);
    assert_string_equal(ev.id, attrs.id);
    assert_string_equal(ev.type, attrs.type);
    assert_string_equal(ev.source, attrs.source);
    assert_string_equal(ev.subject, attrs.subject);
    assert_string_equal(ev.time, attrs.time);
    assert_true(cJSON_Compare(ev.data, data, 1));
    of_event_free(&ev);
    of_message_free(&m);

    /* No subject, no key, time = now. */
    attrs.subject = NULL;
    attrs.time = NULL;
    assert_int_equal(of_event_build(&m, "order.status", NULL, &attrs, data, &err), 0);
    assert_null(m.key);
    assert_int_equal(m.n_headers, 6);
    assert_null(find_header(&m, "ce_subject"));
    const of_header *t = find_header(&m, "ce_time");
    assert_non_null(t);
    assert_true(of_event_time_valid(t->value));
    assert_int_equal(t->len, 24);
    assert_int_equal(parse_message(&m, &ev, &err), 0);
    assert_false(ev.has_subject);
    assert_true(ev.has_time);
    of_event_free(&ev);
    of_message_free(&m);
    cJSON_Delete(data);
}

static void test_build_errors(void **state)
{
    (void)state;
    static const struct {
        of_event_attrs attrs; /* attributes */
        int code;             /* expected code */
        const char *reason;   /* expected reason */
    } cases[] = {
        {{"bad id", "t", "s", NULL, NULL},
         OF_EVENT_ERR_INVALID_ID,
         "attribute \"ce_id\" contains a character outside [A-Za-z0-9._:-] at position 4"},
        {{"", "t", "s", NULL, NULL}, OF_EVENT_ERR_INVALID_ID, "attribute \"ce_id\" is empty"},
        {{"e", "t/x", "s", NULL, NULL},
         OF_EVENT_ERR_INVALID_ATTRIBUTE,
         "attribute \"ce_type\" contains a character outside [A-Za-z0-9._-] at position 2"},
        {{"e", "t", "", NULL, NULL},
         OF_EVENT_ERR_INVALID_ATTRIBUTE,
         "attribute \"ce_source\" is empty"},
        {{"e", "t", "s", "", NULL},
         OF_EVENT_ERR_INVALID_ATTRIBUTE,
         "attribute \"ce_subject\" is empty"},
        {{"e", "t", "s", NULL, "2026-11-25"},
         OF_EVENT_ERR_INVALID_TIME,
         "attribute \"ce_time\" is not an RFC 3339 date-time"},
        {{"e", "t", "s", NULL, "2026-11-25T04:00:00.123456789+00:00 and more"},
         OF_EVENT_ERR_INVALID_TIME,
         "attribute \"ce_time\" is not an RFC 3339 date-time"},
        {{NULL, "t", "s", NULL, NULL},
         OF_EVENT_ERR_MISSING_ATTRIBUTE,
         "could not build event: \"ce_id\", \"ce_type\" and \"ce_source\" are required"},
    };
    cJSON *data = cJSON_CreateObject();
    of_event_error err;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        of_message m = {0};
        assert_int_equal(of_event_build(&m, "order.status", "k", &cases[i].attrs, data, &err),
                         cases[i].code);
        assert_string_equal(err.reason, cases[i].reason);
        assert_null(m.topic);
        assert_null(m.value);
        assert_int_equal(m.n_headers, 0);
    }

    of_event_attrs ok = {"e", "t", "s", NULL, NULL};
    of_message m = {0};
    cJSON *arr = cJSON_CreateArray();
    assert_int_equal(of_event_build(&m, "order.status", NULL, &ok, arr, &err),
                     OF_EVENT_ERR_DATA_NOT_OBJECT);
    assert_string_equal(err.reason, "could not build event: data must be a JSON object, not an "
                                    "array");
    assert_int_equal(of_event_build(&m, "order.status", NULL, &ok, NULL, &err),
                     OF_EVENT_ERR_DATA_NOT_OBJECT);
    assert_int_equal(of_event_build(&m, NULL, NULL, &ok, data, &err),
                     OF_EVENT_ERR_MISSING_ATTRIBUTE);
    cJSON_Delete(arr);

    /* Too large once printed: {"pad":"x...x"} of 65537 bytes. */
    char *pad = malloc(65537 - 10 + 1);
    assert_non_null(pad);
    memset(pad, 'x', 65537 - 10);
    pad[65537 - 10] = '\0';
    assert_non_null(cJSON_AddStringToObject(data, "pad", pad));
    assert_int_equal(of_event_build(&m, "order.status", NULL, &ok, data, &err),
                     OF_EVENT_ERR_VALUE_TOO_LARGE);
    assert_string_equal(err.reason, "value is 65537 bytes, more than the limit of 65536");
    assert_null(m.value);
    /* One byte less fits exactly. */
    pad[65536 - 10] = '\0';
    cJSON_DeleteItemFromObjectCaseSensitive(data, "pad");
    assert_non_null(cJSON_AddStringToObject(data, "pad", pad));
    assert_int_equal(of_event_build(&m, "order.status", NULL, &ok, data, &err), 0);
    assert_int_equal(m.value_len, 65536);
    of_message_free(&m);
    free(pad);

    /* Strings that are not UTF-8 would be refused by every reader. */
    cJSON_DeleteItemFromObjectCaseSensitive(data, "pad");
    assert_non_null(cJSON_AddStringToObject(data, "bad", "\xff"));
    assert_int_equal(of_event_build(&m, "order.status", NULL, &ok, data, &err),
                     OF_EVENT_ERR_MALFORMED_JSON);
    assert_string_equal(err.reason, "could not build event: data is not valid UTF-8");
    cJSON_Delete(data);
}

static void test_json_member(void **state)
{
    (void)state;
    cJSON *o = cJSON_Parse("{\"a\":1,\"A\":2,\"b\":3,\"a\":4}");
    bool dup;
    assert_non_null(o);
    assert_int_equal(of_event_json_member(o, "a", &dup)->valueint, 1);
    assert_true(dup);
    assert_int_equal(of_event_json_member(o, "A", &dup)->valueint, 2);
    assert_false(dup);
    assert_null(of_event_json_member(o, "c", &dup));
    assert_false(dup);
    assert_null(of_event_json_member(NULL, "a", &dup));
    cJSON_Delete(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc3339),          cmocka_unit_test(test_time_format),
        cmocka_unit_test(test_build_round_trip), cmocka_unit_test(test_build_errors),
        cmocka_unit_test(test_json_member),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
