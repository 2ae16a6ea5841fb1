/* test_outbox.c: unit tests of the outbox's header encoding (jsonb with text or
 * base64 values) and of the insert it appends to a pipeline. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "orderflow/outbox.h"

/* Encodes m's headers, checks the exact JSON, parses it back into a new
 * message and checks every header survived byte for byte. */
static void assert_round_trip(const of_message *m, const char *want_json)
{
    of_message back = {0};
    char *json = of_outbox_headers_json(m->headers, m->n_headers, false);
    assert_non_null(json);
    if (want_json != NULL)
        assert_string_equal(json, want_json);
    assert_int_equal(of_outbox_headers_parse(json, &back), 0);
    assert_int_equal(back.n_headers, m->n_headers);
    for (size_t i = 0; i < m->n_headers; i++) {
        assert_string_equal(back.headers[i].name, m->headers[i].name);
        assert_int_equal(back.headers[i].len, m->headers[i].len);
        assert_memory_equal(back.headers[i].value, m->headers[i].value, m->headers[i].len);
    }
    free(json);
    of_message_free(&back);
}

static void test_text_headers(void **state)
{
    of_message m = {0};
    assert_int_equal(of_message_add_header(&m, "ce_type", "order.created", 13), 0);
    assert_int_equal(of_message_add_header(&m, "content-type", "application/json", 16), 0);
    assert_int_equal(of_message_add_header(&m, "quote", "say \"hi\"\\", 9), 0);
    assert_int_equal(of_message_add_header(&m, "utf8", "caf\xc3\xa9", 5), 0);
    assert_round_trip(&m, "[{\"k\":\"ce_type\",\"v\":\"order.created\"},"
                          "{\"k\":\"content-type\",\"v\":\"application/json\"},"
                          "{\"k\":\"quote\",\"v\":\"say \\\"hi\\\"\\\\\"},"
                          "{\"k\":\"utf8\",\"v\":\"caf\xc3\xa9\"}]");
    of_message_free(&m);
}

static void test_binary_headers(void **state)
{
    of_message m = {0};
    /* 0xff is not UTF-8; a NUL would be cut off by a JSON string: both go
     * to base64, and each padding length is covered. */
    assert_int_equal(of_message_add_header(&m, "bin3", "\xff\0a", 3), 0);
    assert_int_equal(of_message_add_header(&m, "nul1", "\0", 1), 0);
    assert_int_equal(of_message_add_header(&m, "bin2", "\xff\xfe", 2), 0);
    assert_int_equal(of_message_add_header(&m, "badutf8", "\xc3\x28", 2), 0);
    assert_int_equal(of_message_add_header(&m, "textnul", "ok\0", 3), 0);
    assert_round_trip(&m, "[{\"k\":\"bin3\",\"b64\":\"/wBh\"},"
                          "{\"k\":\"nul1\",\"b64\":\"AA==\"},"
                          "{\"k\":\"bin2\",\"b64\":\"//4=\"},"
                          "{\"k\":\"badutf8\",\"b64\":\"wyg=\"},"
                          "{\"k\":\"textnul\",\"b64\":\"b2sA\"}]");
    of_message_free(&m);
}

/* A header name that is not text (jsonb could not hold it) goes to "kb64";
 * the escaped form puts every name and value in base64. Both round-trip. */
static void test_hostile_names_and_escaped_form(void **state)
{
    of_message m = {0}, back = {0};
    assert_int_equal(of_message_add_header(&m, "x-\xff\xfe", "v", 1), 0);
    assert_int_equal(of_message_add_header(&m, "ok", "\xc3\x28", 2), 0);
    assert_round_trip(&m, "[{\"kb64\":\"eC3//g==\",\"v\":\"v\"},{\"k\":\"ok\",\"b64\":\"wyg=\"}]");
    char *json = of_outbox_headers_json(m.headers, m.n_headers, true);
    assert_non_null(json);
    assert_string_equal(json, "[{\"kb64\":\"eC3//g==\",\"b64\":\"dg==\"},"
                              "{\"kb64\":\"b2s=\",\"b64\":\"wyg=\"}]");
    assert_int_equal(of_outbox_headers_parse(json, &back), 0);
    assert_int_equal(back.n_headers, 2);
    assert_string_equal(back.headers[0].name, "x-\xff\xfe");
    assert_memory_equal(back.headers[1].value, "\xc3\x28", 2);
    /* A name holding a NUL could not be sent as a Kafka header name. */
    of_message bad = {0};
    assert_int_equal(of_outbox_headers_parse("[{\"kb64\":\"YQBi\",\"v\":\"x\"}]", &bad), OF_EINVAL);
    of_message_free(&bad);
    free(json);
    of_message_free(&back);
    of_message_free(&m);
}

static void test_empty_value_and_no_headers(void **state)
{
    of_message m = {0};
    assert_round_trip(&m, "[]");
    assert_int_equal(of_message_add_header(&m, "empty", "", 0), 0);
    assert_round_trip(&m, "[{\"k\":\"empty\",\"v\":\"\"}]");
    of_message_free(&m);
}

static void test_all_byte_values(void **state)
{
    of_message m = {0};
    unsigned char all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    /* Every length 0..256 over every byte value, so every base64 group and
     * padding position is decoded back exactly. */
    for (size_t len = 0; len <= 256; len += 1)
        assert_int_equal(of_message_add_header(&m, "b", all + (256 - len), len), 0);
    assert_round_trip(&m, NULL);
    of_message_free(&m);
}

static void test_parse_appends(void **state)
{
    of_message m = {0};
    assert_int_equal(of_message_add_header(&m, "first", "1", 1), 0);
    assert_int_equal(
        of_outbox_headers_parse("[{\"k\":\"a\",\"v\":\"x\"},{\"k\":\"b\",\"b64\":\"AP8=\"}]", &m),
        0);
    assert_int_equal(m.n_headers, 3);
    assert_string_equal(m.headers[0].name, "first");
    assert_string_equal(m.headers[1].name, "a");
    assert_string_equal(m.headers[1].value, "x");
    assert_string_equal(m.headers[2].name, "b");
    assert_int_equal(m.headers[2].len, 2);
    assert_memory_equal(m.headers[2].value, "\0\xff", 2);
    of_message_free(&m);
}

static void test_parse_rejects(void **state)
{
    static const char *const bad[] = {
        "",
        "not json",
        "[",
        "null",
        "{}",
        "{\"k\":\"a\",\"v\":\"x\"}",
        "\"[]\"",
        "[1]",
        "[\"k\"]",
        "[[\"k\",\"v\"]]",
        "[null]",
        "[{}]",
        "[{\"v\":\"x\"}]",
        "[{\"k\":1,\"v\":\"x\"}]",
        "[{\"k\":null,\"v\":\"x\"}]",
        "[{\"k\":\"a\"}]",
        "[{\"k\":\"a\",\"v\":5}]",
        "[{\"k\":\"a\",\"v\":null}]",
        "[{\"k\":\"a\",\"b64\":true}]",
        "[{\"k\":\"a\",\"b64\":\"abc\"}]",
        "[{\"k\":\"a\",\"b64\":\"ab!d\"}]",
        "[{\"k\":\"a\",\"b64\":\"====\"}]",
        "[{\"k\":\"a\",\"b64\":\"A===\"}]",
        "[{\"k\":\"a\",\"b64\":\"AB=C\"}]",
        "[{\"k\":\"a\",\"b64\":\"AA==AAAA\"}]",
        "[{\"k\":\"a\",\"v\":\"x\"},{\"k\":\"b\"}]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        of_message m = {0};
        if (of_outbox_headers_parse(bad[i], &m) != OF_EINVAL)
            fail_msg("accepted malformed headers %s", bad[i]);
        of_message_free(&m);
    }
    of_message m = {0};
    assert_int_equal(of_outbox_headers_parse("[]", &m), 0);
    assert_int_equal(m.n_headers, 0);
    of_message_free(&m);
}

static void test_outbox_add(void **state)
{
    of_db_pipeline p;
    of_message m = {0};
    of_db_pipeline_init(&p);
    m.id = strdup("0190a6c4-7a3b-7cde-8f01-23456789abcd");
    m.topic = strdup("order.status");
    m.key = malloc(3);
    m.value = strdup("{\"a\":1}");
    assert_non_null(m.id);
    assert_non_null(m.topic);
    assert_non_null(m.key);
    assert_non_null(m.value);
    memcpy(m.key, "k\0y", 3);
    m.key_len = 3;
    m.value_len = 7;
    assert_int_equal(of_message_add_header(&m, "ce_id", "x", 1), 0);
    assert_int_equal(of_outbox_add(&p, &m), OF_OK);
    assert_int_equal(p.n, 1);
    const of_db_cmd *c = &p.cmds[0];
    assert_string_equal(c->stmt, "of_outbox_insert");
    assert_int_equal(c->nparams, 5);
    assert_string_equal(c->values[0], m.id);
    assert_string_equal(c->values[1], "order.status");
    assert_int_equal(c->formats[2], 1);
    assert_int_equal(c->lengths[2], 3);
    assert_memory_equal(c->values[2], "k\0y", 3);
    assert_int_equal(c->formats[3], 1);
    assert_int_equal(c->lengths[3], 7);
    assert_memory_equal(c->values[3], "{\"a\":1}", 7);
    assert_int_equal(c->formats[4], 0);
    assert_string_equal(c->values[4], "[{\"k\":\"ce_id\",\"v\":\"x\"}]");

    /* No key: the key parameter is SQL NULL. */
    free(m.key);
    m.key = NULL;
    m.key_len = 0;
    assert_int_equal(of_outbox_add(&p, &m), OF_OK);
    assert_int_equal(p.n, 2);
    assert_null(p.cmds[1].values[2]);
    of_db_pipeline_free(&p);
    of_message_free(&m);
}

/* What an insert's result (id, held) says of each row, found wherever it
 * is: in order (the hint moves on), out of order, or not at all. */
static void test_result_find(void **state)
{
    PGresAttDesc attrs[2];
    PGresult *r = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    int hint = 0;
    memset(attrs, 0, sizeof attrs);
    attrs[0].name = (char *)"id";
    attrs[0].typid = 2950;
    attrs[0].typlen = 16;
    attrs[1].name = (char *)"held";
    attrs[1].typid = 16;
    attrs[1].typlen = 1;
    assert_int_equal(PQsetResultAttrs(r, 2, attrs), 1);
    assert_int_equal(PQsetvalue(r, 0, 0, (char *)"a", 1), 1);
    assert_int_equal(PQsetvalue(r, 0, 1, (char *)"f", 1), 1);
    assert_int_equal(PQsetvalue(r, 1, 0, (char *)"b", 1), 1);
    assert_int_equal(PQsetvalue(r, 1, 1, (char *)"t", 1), 1);
    assert_int_equal(PQsetvalue(r, 2, 0, (char *)"c", 1), 1);
    assert_int_equal(PQsetvalue(r, 2, 1, (char *)"f", 1), 1);
    assert_int_equal(of_outbox_result_find(r, "a", &hint), OF_OUTBOX_SEND);
    assert_int_equal(hint, 1);
    assert_int_equal(of_outbox_result_find(r, "b", &hint), OF_OUTBOX_HELD);
    assert_int_equal(of_outbox_result_find(r, "c", &hint), OF_OUTBOX_SEND);
    assert_int_equal(hint, 3);
    /* Out of order, and from a hint past the end: found all the same. */
    assert_int_equal(of_outbox_result_find(r, "a", &hint), OF_OUTBOX_SEND);
    assert_int_equal(hint, 1);
    assert_int_equal(of_outbox_result_find(r, "d", &hint), OF_OUTBOX_ABSENT);
    assert_int_equal(of_outbox_result_find(r, "", &hint), OF_OUTBOX_ABSENT);
    hint = 0;
    assert_int_equal(of_outbox_result_find(NULL, "a", &hint), OF_OUTBOX_ABSENT);
    PQclear(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_headers),
        cmocka_unit_test(test_binary_headers),
        cmocka_unit_test(test_hostile_names_and_escaped_form),
        cmocka_unit_test(test_empty_value_and_no_headers),
        cmocka_unit_test(test_all_byte_values),
        cmocka_unit_test(test_parse_appends),
        cmocka_unit_test(test_parse_rejects),
        cmocka_unit_test(test_outbox_add),
        cmocka_unit_test(test_result_find),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
