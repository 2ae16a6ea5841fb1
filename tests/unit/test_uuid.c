/* test_uuid.c: unit tests of UUID generation (versions 4 and 7) and validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "orderflow/uuid.h"

#define ROUNDS 1000

/* Milliseconds since the epoch from the realtime clock. */
static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Checks the 8-4-4-4-12 lowercase hex layout, the version nibble and the
 * RFC 9562 variant bits (10xx). */
static void assert_uuid_shape(const char *u, char version)
{
    assert_int_equal(strlen(u), 36);
    for (size_t i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            assert_int_equal(u[i], '-');
        } else {
            int hex = (u[i] >= '0' && u[i] <= '9') || (u[i] >= 'a' && u[i] <= 'f');
            assert_true(hex);
        }
    }
    assert_int_equal(u[14], version);
    assert_non_null(strchr("89ab", u[19]));
    assert_true(of_uuid_valid(u));
}

static void test_v4_format(void **state)
{
    char prev[OF_UUID_STRLEN + 1] = "";
    /* The variant nibble takes all four values over many draws, so the two
     * fixed bits are really fixed and the two random ones really random. */
    int variants[4] = {0};
    for (int i = 0; i < ROUNDS; i++) {
        char u[OF_UUID_STRLEN + 1];
        memset(u, 'z', sizeof u);
        assert_int_equal(of_uuid_v4(u), 0);
        assert_uuid_shape(u, '4');
        assert_string_not_equal(u, prev);
        variants[strchr("89ab", u[19]) - "89ab"]++;
        memcpy(prev, u, sizeof u);
    }
    for (int i = 0; i < 4; i++)
        assert_true(variants[i] > 0);
}

static void test_v7_format_and_time(void **state)
{
    for (int i = 0; i < ROUNDS; i++) {
        char u[OF_UUID_STRLEN + 1];
        char hex[13];
        uint64_t before = now_ms();
        assert_int_equal(of_uuid_v7(u), 0);
        uint64_t after = now_ms();
        assert_uuid_shape(u, '7');
        /* The first 48 bits are the Unix time in milliseconds. */
        memcpy(hex, u, 8);
        memcpy(hex + 8, u + 9, 4);
        hex[12] = '\0';
        uint64_t ms = strtoull(hex, NULL, 16);
        assert_true(ms >= before);
        assert_true(ms <= after);
    }
}

static void test_v7_ordering(void **state)
{
    char prev[OF_UUID_STRLEN + 1];
    assert_int_equal(of_uuid_v7(prev), 0);
    for (int i = 0; i < 20; i++) {
        char u[OF_UUID_STRLEN + 1];
        sleep_ms(2);
        assert_int_equal(of_uuid_v7(u), 0);
        /* Ids made in later milliseconds sort after earlier ones, as text. */
        assert_true(strcmp(prev, u) < 0);
        memcpy(prev, u, sizeof u);
    }
}

/* One validation case: input and expected verdict. */
typedef struct valid_case {
    const char *text; /* candidate */
    bool valid;       /* expected of_uuid_valid() */
} valid_case;

static void test_valid_table(void **state)
{
    static const valid_case cases[] = {
        {"0190a6c4-7a3b-7cde-8f01-23456789abcd", true},
        {"0190A6C4-7A3B-7CDE-8F01-23456789ABCD", true},
        {"00000000-0000-0000-0000-000000000000", true},
        {"ffffffff-ffff-4fff-bfff-ffffffffffff", true},
        {"0190a6c4-7a3b-7cde-8f01-23456789abc", false},   /* 35 characters */
        {"0190a6c4-7a3b-7cde-8f01-23456789abcde", false}, /* 37 characters */
        {"0190a6c47a3b-7cde-8f01-23456789abcdef", false}, /* dash misplaced */
        {"0190a6c4-7a3b-7cde-8f01_23456789abcd", false},  /* underscore for dash */
        {"0190a6c4-7a3b-7cde-8f01-23456789abcg", false},  /* g is not hex */
        {"0190a6c4-7a3b-7cde-8f0-123456789abcd", false},  /* groups 4-13 */
        {"{190a6c4-7a3b-7cde-8f01-23456789abcd}", false}, /* braces */
        {" 190a6c4-7a3b-7cde-8f01-23456789abcd", false},  /* leading space */
        {"0190a6c4-7a3b-7cde-8f01-23456789abc ", false},  /* trailing space */
        {"0190a6c4a7a3bb7cdeb8f01b23456789abcd", false},  /* no dashes, right length */
        {"0190a6c4-7a3b-7cde-8f01-23456789abc\xc3", false},
        {"", false},
        {NULL, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (of_uuid_valid(cases[i].text) != cases[i].valid)
            fail_msg("case %zu \"%s\": expected %s", i, cases[i].text ? cases[i].text : "(null)",
                     cases[i].valid ? "valid" : "invalid");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v4_format),
        cmocka_unit_test(test_v7_format_and_time),
        cmocka_unit_test(test_v7_ordering),
        cmocka_unit_test(test_valid_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
