/* event_check.c: error codes, character classes and the attribute checks shared by parser and
 * builder. */
#include "event_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ------------------------------------------------------------------------ */
/* Codes and errors                                                          */
/* ------------------------------------------------------------------------ */

static const char *const code_names[] = {
    "OK",
    "VALUE_TOO_LARGE",
    "MALFORMED_JSON",
    "MISSING_ATTRIBUTE",
    "INVALID_ATTRIBUTE",
    "UNSUPPORTED_SPECVERSION",
    "UNSUPPORTED_CONTENT_TYPE",
    "DATA_NOT_OBJECT",
    "MISSING_FIELD",
    "WRONG_TYPE",
    "OUT_OF_RANGE",
    "INVALID_ID",
    "TOO_MANY_ITEMS",
    "UNKNOWN_TYPE",
    "INVALID_STATUS",
    "INVALID_TIME",
    "OUT_OF_MEMORY",
};

const char *of_event_code_name(int code)
{
    if (code > 0 || code < -(int)(sizeof code_names / sizeof code_names[0] - 1))
        return "UNKNOWN";
    return code_names[-code];
}

bool of_event_code_transient(int code)
{
    return code == OF_EVENT_ERR_NO_MEMORY;
}

int of_event_error_set(of_event_error *err, of_event_code code, const char *fmt, ...)
{
    if (err != NULL) {
        va_list ap;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->reason, sizeof err->reason, fmt, ap);
        va_end(ap);
    }
    return (int)code;
}

void ev_error_clear(of_event_error *err)
{
    if (err != NULL) {
        err->code = OF_EVENT_OK;
        err->reason[0] = '\0';
    }
}

/* ------------------------------------------------------------------------ */
/* Character classes and text checks                                         */
/* ------------------------------------------------------------------------ */

static bool is_alnum_ascii(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

bool ev_is_id_char(unsigned char c)
{
    return is_alnum_ascii(c) || c == '.' || c == '_' || c == ':' || c == '-';
}

bool ev_is_type_char(unsigned char c)
{
    return is_alnum_ascii(c) || c == '.' || c == '_' || c == '-';
}

bool ev_is_printable_ascii(unsigned char c)
{
    return c >= 0x20 && c <= 0x7e;
}

bool of_event_id_valid(const char *text)
{
    if (text == NULL)
        return false;
    size_t len = strnlen(text, OF_EVENT_ID_MAX + 1);
    if (len == 0 || len > OF_EVENT_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!ev_is_id_char((unsigned char)text[i]))
            return false;
    }
    return true;
}

/* ------------------------------------------------------------------------ */
/* Attribute checks, shared by headers, structured members and the builder.  */
/* Each takes the bytes (not NUL terminated), a label for the reason such as */
/* header "ce_id", and copies the accepted value into dst.                  */
/* ------------------------------------------------------------------------ */

void ev_copy_text(char *dst, const char *src, size_t len)
{
    if (len > 0)
        memcpy(dst, src, len);
    dst[len] = '\0';
}

int ev_check_nul(const char *label, const char *p, size_t len, of_event_error *err)
{
    if (len > 0 && memchr(p, '\0', len) != NULL)
        return of_event_error_set(err, OF_EVENT_ERR_INVALID_ATTRIBUTE, "%s contains a NUL byte",
                                  label);
    return 0;
}

int ev_check_id(const char *label, const char *p, size_t len, char *dst, of_event_error *err)
{
    if (len == 0)
        return of_event_error_set(err, OF_EVENT_ERR_INVALID_ID, "%s is empty", label);
    if (len > OF_EVENT_ID_MAX)
        return of_event_error_set(err, OF_EVENT_ERR_INVALID_ID,
                                  "%s has %zu characters, more than the limit of %d", label, len,
                                  OF_EVENT_ID_MAX);
    for (size_t i = 0; i < len; i++) {
        if (!ev_is_id_char((unsigned char)p[i]))
            return of_event_error_set(
                err, OF_EVENT_ERR_INVALID_ID,
                "%s contains a character outside " ID_CHARS_TEXT " at position %zu", label, i + 1);
    }
    ev_copy_text(dst, p, len);
    return 0;
}

int ev_check_type(const char *label, const char *p, size_t len, char *dst, of_event_error *err)
{
    if (len == 0)
        return of_event_error_set(err, OF_EVENT_ERR_INVALID_ATTRIBUTE, "%s is empty", label);
    if (len > OF_EVENT_TYPE_MAX)
        return of_event_error_set(err, OF_EVENT_ERR_INVALID_ATTRIBUTE,
                                  "%s has %zu characters, more than the limit of %d", label, len,
                                  OF_EVENT_TYPE_MAX);
    for (size_t i = 0; i < len; i++) {
        if (!ev_is_type_char((unsigned char)p[i]))
            return of_event_error_set(err, OF_EVENT_ERR_INVALID_ATTRIBUTE,
                                      "%s contains a character outside [A-Za-z0-9._-] at "
                                      "position %zu",
                                      label, i + 1);
    }
    ev_copy_text(dst, p, len);
    return 0;
}

/* ce_source and ce_subject: 1..max printable ASCII characters. */
int ev_check_printable(const char *label, const char *p, size_t len, size_t max, char *dst,
                       of_event_error *err)
{
    if (len == 0)
        return of_event_error_set(err, OF_EVENT_ERR_INVALID_ATTRIBUTE, "%s is empty", label);
    if (len > max)
        return of_event_error_set(err, OF_EVENT_ERR_INVALID_ATTRIBUTE,
                                  "%s has %zu characters, more than the limit of %zu", label, len,
                                  max);
    for (size_t i = 0; i < len; i++) {
        if (!ev_is_printable_ascii((unsigned char)p[i]))
            return of_event_error_set(err, OF_EVENT_ERR_INVALID_ATTRIBUTE,
                                      "%s contains a character that is not printable ASCII at "
                                      "position %zu",
                                      label, i + 1);
    }
    ev_copy_text(dst, p, len);
    return 0;
}

int ev_check_specversion(const char *label, const char *p, size_t len, char *dst,
                         of_event_error *err)
{
    if (len != strlen(OF_EVENT_SPECVERSION) || memcmp(p, OF_EVENT_SPECVERSION, len) != 0)
        return of_event_error_set(err, OF_EVENT_ERR_UNSUPPORTED_SPECVERSION,
                                  "%s must be \"" OF_EVENT_SPECVERSION "\"", label);
    ev_copy_text(dst, p, len);
    return 0;
}

int ev_check_time(const char *label, const char *p, size_t len, char *dst, of_event_error *err)
{
    if (ev_time_parse_n(p, len, NULL) != 0)
        return of_event_error_set(err, OF_EVENT_ERR_INVALID_TIME, "%s is not an RFC 3339 date-time",
                                  label);
    ev_copy_text(dst, p, len);
    return 0;
}

/* Compares the media type of a content type (before any ';', without
 * surrounding blanks) with want, ignoring case. */
bool ev_media_type_is(const char *p, size_t len, const char *want)
{
    size_t start = 0, end;
    while (start < len && (p[start] == ' ' || p[start] == '\t'))
        start++;
    end = start;
    while (end < len && p[end] != ';')
        end++;
    while (end > start && (p[end - 1] == ' ' || p[end - 1] == '\t'))
        end--;
    return end - start == strlen(want) && strncasecmp(p + start, want, end - start) == 0;
}

/* A content type must be printable ASCII and short; its media type is checked by the caller. */
int ev_check_content_type(const char *label, const char *p, size_t len, char *dst,
                          of_event_error *err)
{
    return ev_check_printable(label, p, len, OF_EVENT_CTYPE_MAX, dst, err);
}
