/* text.h: UTF-8 checks, the escaped form of bytes that are not text, base64.
 *
 * Postgres text and jsonb hold only valid UTF-8 without NUL bytes; a record
 * from Kafka can carry anything. of_text_escape() turns any bytes into text
 * that Postgres, JSON logs and Kafka headers accept, keeping what was
 * already text, so that a dead letter can always say what it received.
 *
 * Ownership: of_text_escape() returns a heap string the caller frees. */
#ifndef ORDERFLOW_TEXT_H
#define ORDERFLOW_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* Length of the valid UTF-8 sequence at s[0..len) (1 to 4), or 0 when the
 * bytes there do not start one (overlong forms, surrogates and code points
 * above U+10FFFF are invalid). */
size_t of_utf8_seq_len(const char *s, size_t len);
/* True when s[0..len) is valid UTF-8 (NUL bytes are valid UTF-8). */
bool of_utf8_valid(const char *s, size_t len);
/* True when s[0..len) is valid UTF-8 without NUL bytes: storable as text. */
bool of_text_storable(const char *s, size_t len);
/* s[0..len) as storable text: valid UTF-8 sequences are kept (only ASCII
 * when ascii is set), every other byte, NUL included, becomes "\xNN".
 * Returns a heap string, or NULL when out of memory. */
char *of_text_escape(const char *s, size_t len, bool ascii);

/* Standard base64 (RFC 4648, with padding) of len bytes as a heap string
 * the caller frees, or NULL when out of memory. */
char *of_base64_encode(const unsigned char *src, size_t len);
/* Decodes src[0..len) (standard alphabet, padded to a multiple of 4, no
 * blanks) into *out, a heap buffer of *out_len bytes plus a NUL the caller
 * frees. Returns 0, OF_EINVAL for anything but canonical base64, or
 * OF_ENOMEM. */
int of_base64_decode(const char *src, size_t len, unsigned char **out, size_t *out_len)
    __attribute__((warn_unused_result));

#endif
