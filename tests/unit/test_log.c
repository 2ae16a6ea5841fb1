/* test_log.c: the logger writes one valid JSON object per line with context. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderflow/error.h"
#include "orderflow/log.h"

/* Runs fn with the log redirected to a memory stream and returns the text. */
static char *capture(void (*fn)(void))
{
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    assert_non_null(mem);
    of_log_set_stream(mem);
    fn();
    of_log_set_stream(NULL);
    fclose(mem);
    return buf;
}

static void write_with_ctx(void)
{
    of_log_ctx ctx = {"o-1", "ce-9", "order.created", 3, 42, "4bf92f3577b34da6a3ce929d0e0e4736"};
    of_log_write(OF_LOG_WARN, &ctx, "could not apply \"%s\": %d\n", "x", 7);
}

static void test_json_line_with_context(void **state)
{
    of_log_init("order-created");
    of_log_set_level(OF_LOG_DEBUG);
    char *out = capture(write_with_ctx);
    size_t len = strlen(out);
    assert_true(len > 0);
    assert_int_equal(out[len - 1], '\n');
    assert_ptr_equal(strchr(out, '\n'), out + len - 1); /* exactly one line */
    cJSON *j = cJSON_Parse(out);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "level")->valuestring, "warn");
    assert_string_equal(cJSON_GetObjectItem(j, "worker")->valuestring, "order-created");
    assert_string_equal(cJSON_GetObjectItem(j, "subject")->valuestring, "o-1");
    assert_string_equal(cJSON_GetObjectItem(j, "ce_id")->valuestring, "ce-9");
    assert_string_equal(cJSON_GetObjectItem(j, "trace_id")->valuestring,
                        "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_string_equal(cJSON_GetObjectItem(j, "topic")->valuestring, "order.created");
    assert_int_equal(cJSON_GetObjectItem(j, "partition")->valueint, 3);
    assert_int_equal(cJSON_GetObjectItem(j, "offset")->valueint, 42);
    assert_string_equal(cJSON_GetObjectItem(j, "msg")->valuestring, "could not apply \"x\": 7\n");
    assert_non_null(strstr(cJSON_GetObjectItem(j, "ts")->valuestring, "Z"));
    cJSON_Delete(j);
    free(out);
}

static void write_debug(void)
{
    of_log_debug("hidden");
}

static void test_level_filter(void **state)
{
    of_log_set_level(OF_LOG_INFO);
    char *out = capture(write_debug);
    assert_string_equal(out, "");
    free(out);
}

static void test_level_parse(void **state)
{
    of_log_level l;
    assert_int_equal(of_log_level_parse("error", &l), 0);
    assert_int_equal(l, OF_LOG_ERROR);
    assert_int_equal(of_log_level_parse("warning", &l), 0);
    assert_int_equal(l, OF_LOG_WARN);
    assert_int_equal(of_log_level_parse("loud", &l), OF_EINVAL);
}

static void test_escape_control_and_truncation(void **state)
{
    char small[8];
    char out[64];
    of_log_json_escape(out, sizeof out, "a\x01\"b");
    assert_string_equal(out, "a\\u0001\\\"b");
    /* An escape that does not fit is dropped whole, never cut in half. */
    of_log_json_escape(small, sizeof small, "abcde\x02");
    assert_string_equal(small, "abcde");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_line_with_context),
        cmocka_unit_test(test_level_filter),
        cmocka_unit_test(test_level_parse),
        cmocka_unit_test(test_escape_control_and_truncation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
