/* test_dlq.c: unit tests of dead-letter records (the "<topic>.dlq" copy and
 * the statement that stores it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "orderflow/dlq.h"
#include "orderflow/text.h"
#include "orderflow/outbox.h"
#include "orderflow/uuid.h"

/* The dlq_ headers of_dlq_build() appends, in order. */
static const char *const dlq_names[6] = {"dlq_reason",    "dlq_error_code", "dlq_topic",
                                         "dlq_partition", "dlq_offset",     "dlq_worker"};

/* Asserts header i of m is (name, value) with value a C string. */
static void assert_header(const of_message *m, size_t i, const char *name, const char *value)
{
    assert_true(i < m->n_headers);
    assert_string_equal(m->headers[i].name, name);
    assert_int_equal(m->headers[i].len, strlen(value));
    assert_memory_equal(m->headers[i].value, value, strlen(value));
}

static void test_build_copies_everything(void **state)
{
    char topic[] = "order.created";
    char key[] = {'o', '\0', 'r', 'd'};
    char value[] = {'{', '\0', '\xff', '}'};
    char h0[] = "evt-1";
    char h1[] = {'b', '\0', 'n'};
    of_header_view headers[3] = {
        {"ce_id", h0, 5},
        {"bin", h1, 3},
        {"nullval", NULL, 0},
    };
    of_record_view rec = {topic, 2, 12345, key, sizeof key, value, sizeof value, headers, 3};
    of_message out = {0};
    assert_int_equal(of_dlq_build(&out, &rec, "order-created", "INVALID", "bad \"json\""), 0);
    /* Everything is a copy: the consumer's record may go away now. */
    memset(topic, 'X', sizeof topic - 1);
    memset(key, 'X', sizeof key);
    memset(value, 'X', sizeof value);
    memset(h0, 'X', sizeof h0 - 1);
    memset(h1, 'X', sizeof h1);

    assert_true(of_uuid_valid(out.id));
    assert_int_equal(out.id[14], '7');
    assert_string_equal(out.topic, "order.created.dlq");
    assert_non_null(out.key);
    assert_int_equal(out.key_len, 4);
    assert_memory_equal(out.key, "o\0rd", 4);
    assert_non_null(out.value);
    assert_int_equal(out.value_len, 4);
    assert_memory_equal(out.value, "{\0\xff}", 4);
    assert_int_equal(out.value[4], '\0');

    assert_int_equal(out.n_headers, 3 + 6);
    assert_header(&out, 0, "ce_id", "evt-1");
    assert_string_equal(out.headers[1].name, "bin");
    assert_int_equal(out.headers[1].len, 3);
    assert_memory_equal(out.headers[1].value, "b\0n", 3);
    assert_header(&out, 2, "nullval", "");
    assert_header(&out, 3, "dlq_reason", "bad \"json\"");
    assert_header(&out, 4, "dlq_error_code", "INVALID");
    assert_header(&out, 5, "dlq_topic", "order.created");
    assert_header(&out, 6, "dlq_partition", "2");
    assert_header(&out, 7, "dlq_offset", "12345");
    assert_header(&out, 8, "dlq_worker", "order-created");
    of_message_free(&out);
}

static void test_build_null_key_and_value(void **state)
{
    of_record_view rec = {"return.requested", -1, -1, NULL, 0, NULL, 0, NULL, 0};
    of_message out = {0};
    assert_int_equal(of_dlq_build(&out, &rec, "w", "E", "r"), 0);
    assert_string_equal(out.topic, "return.requested.dlq");
    assert_null(out.key);
    assert_int_equal(out.key_len, 0);
    /* The value is an empty string, never NULL, so the producer and the
     * outbox insert can use it as is. */
    assert_non_null(out.value);
    assert_int_equal(out.value_len, 0);
    assert_string_equal(out.value, "");
    assert_int_equal(out.n_headers, 6);
    for (size_t i = 0; i < 6; i++)
        assert_string_equal(out.headers[i].name, dlq_names[i]);
    assert_header(&out, 0, "dlq_reason", "r");
    assert_header(&out, 1, "dlq_error_code", "E");
    assert_header(&out, 2, "dlq_topic", "return.requested");
    assert_header(&out, 3, "dlq_partition", "-1");
    assert_header(&out, 4, "dlq_offset", "-1");
    assert_header(&out, 5, "dlq_worker", "w");
    of_message_free(&out);
}

static void test_build_large_offset_and_unique_ids(void **state)
{
    of_record_view rec = {"t", INT32_MAX, INT64_MAX, "k", 1, "v", 1, NULL, 0};
    of_message a = {0}, b = {0};
    assert_int_equal(of_dlq_build(&a, &rec, "w", "E", "r"), 0);
    assert_int_equal(of_dlq_build(&b, &rec, "w", "E", "r"), 0);
    assert_header(&a, 3, "dlq_partition", "2147483647");
    assert_header(&a, 4, "dlq_offset", "9223372036854775807");
    assert_string_not_equal(a.id, b.id);
    of_message_free(&a);
    of_message_free(&b);
}

static void test_add_statement(void **state)
{
    of_header_view headers[1] = {{"ce_type", "order.created", 13}};
    of_record_view rec = {"order.created", 1, 7, "key", 3, "v\0w", 3, headers, 1};
    of_message dlq = {0};
    of_db_pipeline p;
    of_db_pipeline_init(&p);
    assert_int_equal(of_dlq_build(&dlq, &rec, "wrk", "BAD", "why"), 0);
    assert_int_equal(of_dlq_add(&p, &rec, &dlq, "wrk", "evt-1", NULL, "BAD", "why", OF_DLQ_AS_IS),
                     OF_OK);
    assert_int_equal(p.n, 1);
    const of_db_cmd *c = &p.cmds[0];
    assert_string_equal(c->stmt, "of_dlq_insert");
    assert_string_equal(c->stmt, of_dlq_stmts[0].name);
    assert_int_equal(of_dlq_n_stmts, 1);
    assert_int_equal(c->nparams, 14);
    assert_string_equal(c->values[0], "wrk");
    assert_string_equal(c->values[1], "order.created");
    assert_string_equal(c->values[2], "1");
    assert_string_equal(c->values[3], "7");
    assert_int_equal(c->formats[4], 1);
    assert_int_equal(c->lengths[4], 3);
    assert_memory_equal(c->values[4], "key", 3);
    assert_int_equal(c->formats[5], 1);
    assert_int_equal(c->lengths[5], 3);
    assert_memory_equal(c->values[5], "v\0w", 3);
    assert_string_equal(c->values[6], "[{\"k\":\"ce_type\",\"v\":\"order.created\"}]");
    assert_string_equal(c->values[7], "evt-1");
    assert_null(c->values[8]); /* no ce_type: SQL NULL */
    assert_string_equal(c->values[9], "BAD");
    assert_string_equal(c->values[10], "why");
    assert_string_equal(c->values[11], dlq.id);
    assert_string_equal(c->values[12], "order.created.dlq");
    /* The DLQ copy's headers: the original plus the six dlq_ ones, in order. */
    of_message back = {0};
    assert_int_equal(of_outbox_headers_parse(c->values[13], &back), 0);
    assert_int_equal(back.n_headers, 7);
    assert_string_equal(back.headers[0].name, "ce_type");
    for (size_t i = 0; i < 6; i++)
        assert_string_equal(back.headers[1 + i].name, dlq_names[i]);
    of_message_free(&back);
    of_message_free(&dlq);

    /* A record without key and value: key is SQL NULL, payload is empty. */
    of_record_view bare = {"order.created", 0, 0, NULL, 0, NULL, 0, NULL, 0};
    of_db_pipeline_reset(&p);
    assert_int_equal(of_dlq_build(&dlq, &bare, "wrk", "BAD", "why"), 0);
    assert_int_equal(of_dlq_add(&p, &bare, &dlq, "wrk", NULL, NULL, "BAD", "why", OF_DLQ_AS_IS),
                     OF_OK);
    c = &p.cmds[0];
    assert_null(c->values[4]);
    assert_non_null(c->values[5]);
    assert_int_equal(c->lengths[5], 0);
    assert_string_equal(c->values[6], "[]");
    assert_null(c->values[7]);
    of_message_free(&dlq);
    of_db_pipeline_free(&p);
}

/* Bytes that are no text anywhere in the record: the dead letter's text
 * parameters are all storable (valid UTF-8, no NUL), the original bytes are
 * kept (bytea, base64), and the escaped form keeps no text of the record. */
static void test_hostile_record(void **state)
{
    of_header_view headers[2] = {{"na\xffme", "v\0\xfe", 3}, {"ce_id", "\xc3\x28", 2}};
    of_record_view rec = {"order.created", 0, 9, "\xff\0k", 3, "\0\xff{", 3, headers, 2};
    const char *reason = "header \"\xff\" is bad\x01 and cut \xe2\x82";
    of_message dlq = {0};
    of_db_pipeline p;
    of_db_pipeline_init(&p);
    assert_int_equal(of_dlq_build(&dlq, &rec, "wrk", "BAD", reason), 0);
    for (of_dlq_form form = OF_DLQ_AS_IS; form <= OF_DLQ_ESCAPED; form++) {
        of_db_pipeline_reset(&p);
        assert_int_equal(of_dlq_add(&p, &rec, &dlq, "wrk", "id-1", "t", "BAD", reason, form),
                         OF_OK);
        const of_db_cmd *c = &p.cmds[0];
        for (int i = 0; i < c->nparams; i++) {
            if (c->formats[i] == 1 || c->values[i] == NULL)
                continue;
            if (!of_text_storable(c->values[i], strlen(c->values[i])))
                fail_msg("parameter %d is not storable text", i + 1);
        }
        assert_memory_equal(c->values[4], "\xff\0k", 3);
        assert_memory_equal(c->values[5], "\0\xff{", 3);
        of_message back = {0};
        assert_int_equal(of_outbox_headers_parse(c->values[6], &back), 0);
        assert_int_equal(back.n_headers, 2);
        assert_string_equal(back.headers[0].name, "na\xffme");
        assert_memory_equal(back.headers[0].value, "v\0\xfe", 3);
        assert_memory_equal(back.headers[1].value, "\xc3\x28", 2);
        of_message_free(&back);
        if (form == OF_DLQ_ESCAPED) {
            assert_null(c->values[7]);
            assert_null(c->values[8]);
            for (const char *r = c->values[10]; *r != '\0'; r++)
                assert_true((unsigned char)*r < 0x80);
            assert_string_equal(c->values[6], "[{\"kb64\":\"bmH/bWU=\",\"b64\":\"dgD+\"},"
                                              "{\"kb64\":\"Y2VfaWQ=\",\"b64\":\"wyg=\"}]");
        } else {
            assert_string_equal(c->values[10], "header \"\\xff\" is bad\x01 and cut \\xe2\\x82");
        }
    }
    of_message_free(&dlq);
    of_db_pipeline_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_copies_everything),
        cmocka_unit_test(test_build_null_key_and_value),
        cmocka_unit_test(test_build_large_offset_and_unique_ids),
        cmocka_unit_test(test_add_statement),
        cmocka_unit_test(test_hostile_record),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
