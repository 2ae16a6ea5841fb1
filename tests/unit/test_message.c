/* test_message.c: unit tests of owned Kafka records (header copies and release). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "orderflow/message.h"

static void test_add_text_header(void **state)
{
    of_message m = {0};
    char name[] = "ce_type";
    char value[] = "order.created";
    assert_int_equal(of_message_add_header(&m, name, value, strlen(value)), 0);
    /* The message holds copies: changing the caller's buffers changes nothing. */
    name[0] = 'X';
    value[0] = 'X';
    assert_int_equal(m.n_headers, 1);
    assert_true(m.cap_headers >= 1);
    assert_string_equal(m.headers[0].name, "ce_type");
    assert_int_equal(m.headers[0].len, 13);
    assert_memory_equal(m.headers[0].value, "order.created", 13);
    assert_int_equal(m.headers[0].value[13], '\0');
    assert_ptr_not_equal(m.headers[0].name, name);
    assert_ptr_not_equal(m.headers[0].value, value);
    of_message_free(&m);
}

static void test_binary_header_keeps_length(void **state)
{
    of_message m = {0};
    static const char bin[] = {'a', '\0', 'b', (char)0xff, '\0'};
    assert_int_equal(of_message_add_header(&m, "bin", bin, sizeof bin), 0);
    assert_int_equal(m.headers[0].len, 5);
    assert_memory_equal(m.headers[0].value, bin, 5);
    /* An empty value and a NULL value are both zero-length, non-NULL strings. */
    assert_int_equal(of_message_add_header(&m, "empty", "", 0), 0);
    assert_int_equal(of_message_add_header(&m, "null", NULL, 7), 0);
    assert_int_equal(m.n_headers, 3);
    assert_int_equal(m.headers[1].len, 0);
    assert_non_null(m.headers[1].value);
    assert_string_equal(m.headers[1].value, "");
    assert_int_equal(m.headers[2].len, 0);
    assert_non_null(m.headers[2].value);
    assert_string_equal(m.headers[2].name, "null");
    of_message_free(&m);
}

static void test_many_headers_grow_in_order(void **state)
{
    of_message m = {0};
    for (int i = 0; i < 100; i++) {
        char name[16], value[16];
        snprintf(name, sizeof name, "h%d", i);
        snprintf(value, sizeof value, "v%d", i * 7);
        assert_int_equal(of_message_add_header(&m, name, value, strlen(value)), 0);
    }
    assert_int_equal(m.n_headers, 100);
    assert_true(m.cap_headers >= 100);
    for (int i = 0; i < 100; i++) {
        char name[16], value[16];
        snprintf(name, sizeof name, "h%d", i);
        snprintf(value, sizeof value, "v%d", i * 7);
        assert_string_equal(m.headers[i].name, name);
        assert_int_equal(m.headers[i].len, strlen(value));
        assert_string_equal(m.headers[i].value, value);
    }
    of_message_free(&m);
}

static void test_free_zeroes(void **state)
{
    of_message m = {0};
    m.id = strdup("0190a6c4-7a3b-7cde-8f01-23456789abcd");
    m.topic = strdup("order.status");
    m.key = strdup("k");
    m.key_len = 1;
    m.value = strdup("{}");
    m.value_len = 2;
    assert_non_null(m.id);
    assert_non_null(m.topic);
    assert_non_null(m.key);
    assert_non_null(m.value);
    assert_int_equal(of_message_add_header(&m, "a", "b", 1), 0);
    of_message_free(&m);
    static const of_message zero = {0};
    assert_memory_equal(&m, &zero, sizeof m);
    /* Freeing again (and freeing NULL) is harmless. */
    of_message_free(&m);
    of_message_free(NULL);
    assert_memory_equal(&m, &zero, sizeof m);
    /* A freed message can be filled again. */
    assert_int_equal(of_message_add_header(&m, "again", "x", 1), 0);
    assert_int_equal(m.n_headers, 1);
    of_message_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_text_header),
        cmocka_unit_test(test_binary_header_keeps_length),
        cmocka_unit_test(test_many_headers_grow_in_order),
        cmocka_unit_test(test_free_zeroes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
