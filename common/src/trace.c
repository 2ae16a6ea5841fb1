/* trace.c: W3C Trace Context: parsing and writing traceparent, checking tracestate, new ids. */
#include "orderflow/trace.h"

#include "orderflow/error.h"
#include "orderflow/uuid.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1; /* uppercase is not allowed either (HEXDIGLC) */
}

/* True when p[0..n) is lowercase hex and, if nonzero is set, not all zeros. */
static bool hex_field(const char *p, size_t n, bool nonzero)
{
    bool any = false;
    for (size_t i = 0; i < n; i++) {
        int v = hex_value((unsigned char)p[i]);
        if (v < 0)
            return false;
        any = any || v != 0;
    }
    return any || !nonzero;
}

bool of_trace_parse(const char *text, size_t len, of_trace *out)
{
    memset(out, 0, sizeof *out);
    if (text == NULL || len < OF_TRACEPARENT_LEN)
        return false;
    /* version "-" trace-id "-" parent-id "-" trace-flags, at fixed places. */
    if (!hex_field(text, 2, false) || text[2] != '-' || text[35] != '-' || text[52] != '-')
        return false;
    int version = hex_value((unsigned char)text[0]) * 16 + hex_value((unsigned char)text[1]);
    if (version == 0xff)
        return false;
    /* Version 00 has exactly these fields; a later one may add fields
     * after a "-", and a receiver reads the ones it knows. */
    if (version == 0 ? len != OF_TRACEPARENT_LEN
                     : len > OF_TRACEPARENT_LEN && text[OF_TRACEPARENT_LEN] != '-')
        return false;
    if (!hex_field(text + 3, OF_TRACE_ID_LEN, true) ||
        !hex_field(text + 36, OF_SPAN_ID_LEN, true) || !hex_field(text + 53, 2, false))
        return false;
    memcpy(out->trace_id, text + 3, OF_TRACE_ID_LEN);
    memcpy(out->span_id, text + 36, OF_SPAN_ID_LEN);
    out->flags =
        (uint8_t)(hex_value((unsigned char)text[53]) * 16 + hex_value((unsigned char)text[54]));
    /* Of a later version's flags only "sampled" has a meaning we know. */
    if (version != 0)
        out->flags &= OF_TRACE_FLAG_SAMPLED;
    return true;
}

static bool is_lcalpha(unsigned char c)
{
    return c >= 'a' && c <= 'z';
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* A key: simple-key, or tenant-id "@" system-id (multi-tenant). */
static bool key_valid(const char *k, size_t n)
{
    const char *at = memchr(k, '@', n);
    size_t tenant = at != NULL ? (size_t)(at - k) : n;
    size_t system = at != NULL ? n - tenant - 1 : 0;

    if (at != NULL ? tenant < 1 || tenant > 241 || system < 1 || system > 14 : n < 1 || n > 256)
        return false;
    /* A simple key starts with a letter, a tenant id with a letter or digit. */
    if (!is_lcalpha((unsigned char)k[0]) && !(at != NULL && is_digit((unsigned char)k[0])))
        return false;
    if (at != NULL && !is_lcalpha((unsigned char)at[1]))
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)k[i];
        if (k + i == at)
            continue;
        if (!is_lcalpha(c) && !is_digit(c) && c != '_' && c != '-' && c != '*' && c != '/')
            return false;
    }
    return true;
}

/* A value: 1 to 256 printable characters but "," and "=", not ending in a space. */
static bool value_valid(const char *v, size_t n)
{
    if (n < 1 || n > 256 || v[n - 1] == ' ')
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c < 0x20 || c > 0x7e || c == ',' || c == '=')
            return false;
    }
    return true;
}

bool of_tracestate_valid(const char *text, size_t len)
{
    const char *keys[OF_TRACESTATE_MEMBERS];
    size_t key_lens[OF_TRACESTATE_MEMBERS];
    size_t members = 0, start = 0;

    if (text == NULL || len < 1 || len > OF_TRACESTATE_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if ((c < 0x20 || c > 0x7e) && c != '\t')
            return false;
    }
    while (start <= len) {
        const char *comma = memchr(text + start, ',', len - start);
        size_t end = comma != NULL ? (size_t)(comma - text) : len;
        size_t a = start, b = end;
        /* Optional white space around a member; an empty member is allowed. */
        while (a < b && (text[a] == ' ' || text[a] == '\t'))
            a++;
        while (b > a && (text[b - 1] == ' ' || text[b - 1] == '\t'))
            b--;
        if (a < b) {
            const char *eq = memchr(text + a, '=', b - a);
            if (eq == NULL || members == OF_TRACESTATE_MEMBERS)
                return false;
            size_t klen = (size_t)(eq - (text + a));
            if (!key_valid(text + a, klen) || !value_valid(eq + 1, b - a - klen - 1))
                return false;
            for (size_t k = 0; k < members; k++)
                if (key_lens[k] == klen && memcmp(keys[k], text + a, klen) == 0)
                    return false;
            keys[members] = text + a;
            key_lens[members] = klen;
            members++;
        }
        if (comma == NULL)
            break;
        start = end + 1;
    }
    return members > 0;
}

void of_trace_format(const of_trace *t, char out[OF_TRACEPARENT_SIZE])
{
    snprintf(out, OF_TRACEPARENT_SIZE, "00-%.32s-%.16s-%02x", t->trace_id, t->span_id,
             (unsigned)t->flags);
}

static void to_hex(const uint8_t *b, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 0x0f];
    }
    out[2 * n] = '\0';
}

int of_trace_id_new(char out[OF_TRACE_ID_SIZE])
{
    uint8_t b[16];
    struct timespec ts;
    out[0] = '\0';
    if (of_random_bytes(b + 6, sizeof b - 6) != 0)
        return OF_ETRANSIENT;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    for (int i = 0; i < 6; i++)
        b[i] = (uint8_t)(ms >> (40 - 8 * i));
    to_hex(b, sizeof b, out);
    return OF_OK;
}

int of_span_id_new(char out[OF_SPAN_ID_SIZE])
{
    static const uint8_t zero[8];
    uint8_t b[8];
    out[0] = '\0';
    /* An all-zero span id is invalid: draw again (one time in 2^64). */
    do {
        if (of_random_bytes(b, sizeof b) != 0)
            return OF_ETRANSIENT;
    } while (memcmp(b, zero, sizeof b) == 0);
    to_hex(b, sizeof b, out);
    return OF_OK;
}

int of_trace_put(of_message *m, const of_trace *t, const char *tracestate)
{
    char tp[OF_TRACEPARENT_SIZE];
    of_trace_format(t, tp);
    of_message_remove_header(m, OF_TRACEPARENT_HEADER);
    of_message_remove_header(m, OF_TRACESTATE_HEADER);
    if (of_message_add_header(m, OF_TRACEPARENT_HEADER, tp, strlen(tp)) != 0)
        return OF_ENOMEM;
    if (tracestate != NULL && tracestate[0] != '\0' &&
        of_message_add_header(m, OF_TRACESTATE_HEADER, tracestate, strlen(tracestate)) != 0)
        return OF_ENOMEM;
    return OF_OK;
}
