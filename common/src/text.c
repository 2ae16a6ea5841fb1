/* text.c: UTF-8 validation and the escaped form of arbitrary bytes. */
#include "orderflow/text.h"

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
