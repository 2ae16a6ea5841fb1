/* test_text.c: unit tests of base64 (text.c); the UTF-8 checks and escapes are covered by
 * test_event.c, test_event_fields.c and test_dlq.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "orderflow/error.h"
#include "orderflow/text.h"

/* RFC 4648, section 10. */
static const struct {
    const char *plain;
    const char *encoded;
} vectors[] = {
    {"", ""},
    {"f", "Zg=="},
    {"fo", "Zm8="},
    {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="},
    {"fooba", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy"},
};

static void test_base64_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        char *enc =
            of_base64_encode((const unsigned char *)vectors[i].plain, strlen(vectors[i].plain));
        unsigned char *dec = NULL;
        size_t len = 99;
        assert_non_null(enc);
        assert_string_equal(enc, vectors[i].encoded);
        assert_int_equal(of_base64_decode(enc, strlen(enc), &dec, &len), 0);
        assert_int_equal(len, strlen(vectors[i].plain));
        assert_memory_equal(dec, vectors[i].plain, len);
        assert_int_equal(dec[len], '\0');
        free(enc);
        free(dec);
    }
}

/* Every byte value, at every offset within a group of three. */
static void test_base64_round_trip(void **state)
{
    unsigned char bytes[258];
    (void)state;
    for (size_t i = 0; i < sizeof bytes; i++)
        bytes[i] = (unsigned char)(i * 7 + 3);
    for (size_t n = 0; n <= sizeof bytes; n += 1 + n / 8) {
        char *enc = of_base64_encode(bytes, n);
        unsigned char *dec = NULL;
        size_t len = 0;
        assert_non_null(enc);
        assert_int_equal(strlen(enc) % 4, 0);
        assert_int_equal(of_base64_decode(enc, strlen(enc), &dec, &len), 0);
        assert_int_equal(len, n);
        if (n > 0)
            assert_memory_equal(dec, bytes, n);
        free(enc);
        free(dec);
    }
}

/* Only canonical base64: anything else is refused, and nothing is returned. */
static void test_base64_invalid(void **state)
{
    static const char *const bad[] = {
        "Zg=",                       /* not a multiple of 4 */
        "Zg",                        /* unpadded */
        "Zg=a",                      /* a digit after padding */
        "Z===",                      /* too much padding */
        "Zg==Zg==",                  /* padding before the end */
        "Zm9v!A==",                  /* not the alphabet */
        "Zm9v YQ==", "Zm9-", "Zm9_", /* blanks; the URL alphabet */
    };
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        unsigned char *dec = (unsigned char *)"x";
        size_t len = 5;
        assert_int_equal(of_base64_decode(bad[i], strlen(bad[i]), &dec, &len), OF_EINVAL);
        assert_null(dec);
        assert_int_equal(len, 0);
    }
    /* The length is what counts: a NUL inside is no digit. */
    unsigned char *dec = NULL;
    size_t len = 0;
    assert_int_equal(of_base64_decode("Zm\0v", 4, &dec, &len), OF_EINVAL);
    assert_null(dec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base64_vectors),
        cmocka_unit_test(test_base64_round_trip),
        cmocka_unit_test(test_base64_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
