/* uuid.c: UUID generation from the kernel's random source (RFC 9562). */
#include "orderflow/uuid.h"

#include "orderflow/error.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

int of_random_bytes(void *buf, size_t len)
{
    uint8_t *p = buf;
    size_t got = 0;
    while (got < len) {
        ssize_t n = getrandom(p + got, len - got, 0);
        if (n < 0)
            return OF_ETRANSIENT;
        got += (size_t)n;
    }
    return 0;
}

static void format_uuid(const uint8_t b[16], char out[OF_UUID_STRLEN + 1])
{
    snprintf(out, OF_UUID_STRLEN + 1,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
}

int of_uuid_v4(char out[OF_UUID_STRLEN + 1])
{
    uint8_t b[16];
    if (of_random_bytes(b, sizeof b) != 0)
        return OF_ETRANSIENT;
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    format_uuid(b, out);
    return 0;
}

int of_uuid_v7(char out[OF_UUID_STRLEN + 1])
{
    uint8_t b[16];
    struct timespec ts;
    if (of_random_bytes(b, sizeof b) != 0)
        return OF_ETRANSIENT;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    for (int i = 0; i < 6; i++)
        b[i] = (uint8_t)(ms >> (40 - 8 * i));
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x70);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    format_uuid(b, out);
    return 0;
}

bool of_uuid_valid(const char *text)
{
    static const char shape[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
    if (text == NULL || strlen(text) != OF_UUID_STRLEN)
        return false;
    for (size_t i = 0; i < OF_UUID_STRLEN; i++) {
        char c = text[i];
        if (shape[i] == '-') {
            if (c != '-')
                return false;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
            return false;
        }
    }
    return true;
}
