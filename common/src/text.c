/* text.c: UTF-8 validation, the escaped form of arbitrary bytes, base64. */
#include "orderflow/text.h"

#include "orderflow/error.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t of_utf8_seq_len(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    unsigned char c, lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    size_t need;
    if (len == 0)
        return 0;
    c = p[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        need = 1;
    } else if (c == 0xe0) {
        need = 2;
        lo = 0xa0; /* no overlong 3-byte forms */
    } else if (c >= 0xe1 && c <= 0xec) {
        need = 2;
    } else if (c == 0xed) {
        need = 2;
        hi = 0x9f; /* no UTF-16 surrogates */
    } else if (c >= 0xee && c <= 0xef) {
        need = 2;
    } else if (c == 0xf0) {
        need = 3;
        lo = 0x90; /* no overlong 4-byte forms */
    } else if (c >= 0xf1 && c <= 0xf3) {
        need = 3;
    } else if (c == 0xf4) {
        need = 3;
        hi = 0x8f; /* nothing above U+10FFFF */
    } else {
        return 0;
    }
    if (len <= need || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t k = 2; k <= need; k++)
        if (p[k] < 0x80 || p[k] > 0xbf)
            return 0;
    return need + 1;
}

bool of_utf8_valid(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        size_t n = of_utf8_seq_len(s + i, len - i);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

bool of_text_storable(const char *s, size_t len)
{
    return of_utf8_valid(s, len) && (len == 0 || memchr(s, '\0', len) == NULL);
}

char *of_text_escape(const char *s, size_t len, bool ascii)
{
    /* At most four output bytes ("\xNN") per input byte. */
    char *out = malloc(len * 4 + 1);
    size_t o = 0, i = 0;
    if (out == NULL)
        return NULL;
    while (i < len) {
        size_t n = of_utf8_seq_len(s + i, len - i);
        if (n > 0 && s[i] != '\0' && (!ascii || n == 1)) {
            memcpy(out + o, s + i, n);
            o += n;
            i += n;
            continue;
        }
        snprintf(out + o, 5, "\\x%02x", (unsigned char)s[i]);
        o += 4;
        i++;
    }
    out[o] = '\0';
    return out;
}

/* ------------------------------------------------------------------------ */
/* base64                                                                    */
/* ------------------------------------------------------------------------ */

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *of_base64_encode(const unsigned char *src, size_t len)
{
    char *out = malloc(4 * ((len + 2) / 3) + 1);
    size_t o = 0;
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)src[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)src[i + 1] << 8;
        if (i + 2 < len)
            v |= src[i + 2];
        out[o++] = b64chars[(v >> 18) & 63];
        out[o++] = b64chars[(v >> 12) & 63];
        out[o++] = i + 1 < len ? b64chars[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? b64chars[v & 63] : '=';
    }
    out[o] = '\0';
    return out;
}

/* The value of a base64 digit, or -1. */
static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

int of_base64_decode(const char *src, size_t len, unsigned char **out, size_t *out_len)
{
    unsigned char *buf;
    size_t o = 0;

    *out = NULL;
    *out_len = 0;
    if (len % 4 != 0)
        return OF_EINVAL;
    buf = malloc(len / 4 * 3 + 1);
    if (buf == NULL)
        return OF_ENOMEM;
    for (size_t i = 0; i < len; i += 4) {
        const unsigned char *q = (const unsigned char *)src + i;
        bool pad2 = q[2] == '=', pad3 = q[3] == '=';
        int a = b64_value(q[0]), b = b64_value(q[1]);
        int c = pad2 ? 0 : b64_value(q[2]), d = pad3 ? 0 : b64_value(q[3]);
        /* Padding only in the last group, and "x=" never before a digit. */
        if (a < 0 || b < 0 || c < 0 || d < 0 || (pad2 && !pad3) ||
            ((pad2 || pad3) && i + 4 != len)) {
            free(buf);
            return OF_EINVAL;
        }
        uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 | (uint32_t)d;
        buf[o++] = (unsigned char)(v >> 16);
        if (!pad2)
            buf[o++] = (unsigned char)(v >> 8);
        if (!pad3)
            buf[o++] = (unsigned char)v;
    }
    buf[o] = '\0';
    *out = buf;
    *out_len = o;
    return 0;
}
