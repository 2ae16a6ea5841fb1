/* event.c: parsing and building CloudEvents 1.0 envelopes on Kafka records, hardened for untrusted
 * bytes. */
#include "orderflow/event.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define CT_JSON       "application/json"
#define CT_CE_JSON    "application/cloudevents+json"
#define CT_CE_BATCH   "application/cloudevents-batch+json"
#define ID_CHARS_TEXT "[A-Za-z0-9._:-]"

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

static void error_clear(of_event_error *err)
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

static bool is_id_char(unsigned char c)
{
    return is_alnum_ascii(c) || c == '.' || c == '_' || c == ':' || c == '-';
}

static bool is_type_char(unsigned char c)
{
    return is_alnum_ascii(c) || c == '.' || c == '_' || c == '-';
}

static bool is_printable_ascii(unsigned char c)
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
        if (!is_id_char((unsigned char)text[i]))
            return false;
    }
    return true;
}

/* ------------------------------------------------------------------------ */
/* RFC 3339 times                                                            */
/* ------------------------------------------------------------------------ */

static bool digits(const char *s, size_t n, int *out)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

static bool leap_year(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int y, int m)
{
    static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && leap_year(y) ? 29 : dim[m - 1];
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* The inverse of days_from_civil(). */
static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* Parses exactly len bytes at s; returns 0 or -1. unix_ms may be NULL. */
static int time_parse_n(const char *s, size_t len, int64_t *unix_ms)
{
    int year, month, day, hour, minute, second, ms = 0, off_h = 0, off_m = 0, off_sign = 0;
    size_t i;

    if (len < 20 || len > OF_EVENT_TIME_MAX)
        return -1;
    if (!digits(s, 4, &year) || s[4] != '-' || !digits(s + 5, 2, &month) || s[7] != '-' ||
        !digits(s + 8, 2, &day) || (s[10] != 'T' && s[10] != 't') || !digits(s + 11, 2, &hour) ||
        s[13] != ':' || !digits(s + 14, 2, &minute) || s[16] != ':' || !digits(s + 17, 2, &second))
        return -1;
    i = 19;
    if (s[i] == '.') {
        size_t start = ++i;
        while (i < len && s[i] >= '0' && s[i] <= '9') {
            if (i - start < 3)
                ms = ms * 10 + (s[i] - '0');
            i++;
        }
        size_t n = i - start;
        if (n == 0 || n > 9)
            return -1;
        for (size_t k = n; k < 3; k++)
            ms *= 10;
    }
    if (i >= len)
        return -1;
    if (s[i] == 'Z' || s[i] == 'z') {
        if (i + 1 != len)
            return -1;
    } else if (s[i] == '+' || s[i] == '-') {
        off_sign = s[i] == '+' ? 1 : -1;
        if (i + 6 != len || !digits(s + i + 1, 2, &off_h) || s[i + 3] != ':' ||
            !digits(s + i + 4, 2, &off_m))
            return -1;
    } else {
        return -1;
    }
    if (month < 1 || month > 12 || day < 1 || day > days_in_month(year, month) || hour > 23 ||
        minute > 59 || second > 60 || off_h > 23 || off_m > 59)
        return -1;
    if (unix_ms != NULL) {
        if (second == 60) { /* a leap second: the last millisecond of its minute */
            second = 59;
            ms = 999;
        }
        int64_t secs = days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 +
                       second - (int64_t)off_sign * (off_h * 3600 + off_m * 60);
        *unix_ms = secs * 1000 + ms;
    }
    return 0;
}

bool of_event_time_valid(const char *text)
{
    if (text == NULL)
        return false;
    return time_parse_n(text, strnlen(text, OF_EVENT_TIME_MAX + 1), NULL) == 0;
}

int of_event_time_parse(const char *text, int64_t *unix_ms)
{
    int64_t v;
    if (text == NULL || unix_ms == NULL)
        return -1;
    if (time_parse_n(text, strnlen(text, OF_EVENT_TIME_MAX + 1), &v) != 0)
        return -1;
    *unix_ms = v;
    return 0;
}

/* Writes v (0 <= v < 10^n) as exactly n decimal digits; returns the end. */
static char *put_digits(char *p, int v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return p + n;
}

int of_event_time_format(int64_t unix_ms, char out[OF_EVENT_TIME_MAX + 1])
{
    /* 0000-01-01T00:00:00.000Z .. 9999-12-31T23:59:59.999Z */
    const int64_t min_ms = -62167219200000, max_ms = 253402300799999;
    if (unix_ms < min_ms || unix_ms > max_ms)
        return -1;
    int64_t days = unix_ms / 86400000, rem = unix_ms % 86400000;
    if (rem < 0) {
        rem += 86400000;
        days--;
    }
    int64_t y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    int h = (int)(rem / 3600000), mi = (int)(rem / 60000 % 60), s = (int)(rem / 1000 % 60),
        ms = (int)(rem % 1000);
    /* Written digit by digit: every value is in range, and no format width
     * can overflow out. */
    char *p = out;
    p = put_digits(p, (int)y, 4);
    *p++ = '-';
    p = put_digits(p, m, 2);
    *p++ = '-';
    p = put_digits(p, d, 2);
    *p++ = 'T';
    p = put_digits(p, h, 2);
    *p++ = ':';
    p = put_digits(p, mi, 2);
    *p++ = ':';
    p = put_digits(p, s, 2);
    *p++ = '.';
    p = put_digits(p, ms, 3);
    *p++ = 'Z';
    *p = '\0';
    return 0;
}

int of_event_time_now(char out[OF_EVENT_TIME_MAX + 1])
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return -1;
    return of_event_time_format((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, out);
}

/* ------------------------------------------------------------------------ */
/* Attribute checks, shared by headers, structured members and the builder.  */
/* Each takes the bytes (not NUL terminated), a label for the reason such as */
/* header "ce_id", and copies the accepted value into dst.                  */
/* ------------------------------------------------------------------------ */

static void copy_text(char *dst, const char *src, size_t len)
{
    if (len > 0)
        memcpy(dst, src, len);
    dst[len] = '\0';
}

static int check_nul(const char *label, const char *p, size_t len, of_event_error *err)
{
    if (len > 0 && memchr(p, '\0', len) != NULL)
        return of_event_error_set(err, OF_EVENT_ERR_INVALID_ATTRIBUTE, "%s contains a NUL byte",
                                  label);
    return 0;
}

static int check_id(const char *label, const char *p, size_t len, char *dst, of_event_error *err)
{
    if (len == 0)
        return of_event_error_set(err, OF_EVENT_ERR_INVALID_ID, "%s is empty", label);
    if (len > OF_EVENT_ID_MAX)
        return of_event_error_set(err, OF_EVENT_ERR_INVALID_ID,
                                  "%s has %zu characters, more than the limit of %d", label, len,
                                  OF_EVENT_ID_MAX);
    for (size_t i = 0; i < len; i++) {
        if (!is_id_char((unsigned char)p[i]))
            return of_event_error_set(
                err, OF_EVENT_ERR_INVALID_ID,
                "%s contains a character outside " ID_CHARS_TEXT " at position %zu", label, i + 1);
    }
    copy_text(dst, p, len);
    return 0;
}

static int check_type(const char *label, const char *p, size_t len, char *dst, of_event_error *err)
{
    if (len == 0)
        return of_event_error_set(err, OF_EVENT_ERR_INVALID_ATTRIBUTE, "%s is empty", label);
    if (len > OF_EVENT_TYPE_MAX)
        return of_event_error_set(err, OF_EVENT_ERR_INVALID_ATTRIBUTE,
                                  "%s has %zu characters, more than the limit of %d", label, len,
                                  OF_EVENT_TYPE_MAX);
    for (size_t i = 0; i < len; i++) {
        if (!is_type_char((unsigned char)p[i]))
            return of_event_error_set(err, OF_EVENT_ERR_INVALID_ATTRIBUTE,
                                      "%s contains a character outside [A-Za-z0-9._-] at "
                                      "position %zu",
                                      label, i + 1);
    }
    copy_text(dst, p, len);
    return 0;
}

/* ce_source and ce_subject: 1..max printable ASCII characters. */
static int check_printable(const char *label, const char *p, size_t len, size_t max, char *dst,
                           of_event_error *err)
{
    if (len == 0)
        return of_event_error_set(err, OF_EVENT_ERR_INVALID_ATTRIBUTE, "%s is empty", label);
    if (len > max)
        return of_event_error_set(err, OF_EVENT_ERR_INVALID_ATTRIBUTE,
                                  "%s has %zu characters, more than the limit of %zu", label, len,
                                  max);
    for (size_t i = 0; i < len; i++) {
        if (!is_printable_ascii((unsigned char)p[i]))
            return of_event_error_set(err, OF_EVENT_ERR_INVALID_ATTRIBUTE,
                                      "%s contains a character that is not printable ASCII at "
                                      "position %zu",
                                      label, i + 1);
    }
    copy_text(dst, p, len);
    return 0;
}

static int check_specversion(const char *label, const char *p, size_t len, char *dst,
                             of_event_error *err)
{
    if (len != strlen(OF_EVENT_SPECVERSION) || memcmp(p, OF_EVENT_SPECVERSION, len) != 0)
        return of_event_error_set(err, OF_EVENT_ERR_UNSUPPORTED_SPECVERSION,
                                  "%s must be \"" OF_EVENT_SPECVERSION "\"", label);
    copy_text(dst, p, len);
    return 0;
}

static int check_time(const char *label, const char *p, size_t len, char *dst, of_event_error *err)
{
    if (time_parse_n(p, len, NULL) != 0)
        return of_event_error_set(err, OF_EVENT_ERR_INVALID_TIME, "%s is not an RFC 3339 date-time",
                                  label);
    copy_text(dst, p, len);
    return 0;
}

/* Compares the media type of a content type (before any ';', without
 * surrounding blanks) with want, ignoring case. */
static bool media_type_is(const char *p, size_t len, const char *want)
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
static int check_content_type(const char *label, const char *p, size_t len, char *dst,
                              of_event_error *err)
{
    return check_printable(label, p, len, OF_EVENT_CTYPE_MAX, dst, err);
}

/* ------------------------------------------------------------------------ */
/* JSON                                                                      */
/* ------------------------------------------------------------------------ */

const cJSON *of_event_json_member(const cJSON *object, const char *name, bool *duplicate)
{
    const cJSON *found = NULL;
    if (duplicate != NULL)
        *duplicate = false;
    if (!cJSON_IsObject(object) || name == NULL)
        return NULL;
    for (const cJSON *c = object->child; c != NULL; c = c->next) {
        if (c->string == NULL || strcmp(c->string, name) != 0)
            continue;
        if (found == NULL) {
            found = c;
        } else {
            if (duplicate != NULL)
                *duplicate = true;
            break;
        }
    }
    return found;
}

/* True when a JSON string in s[0..len) contains the escape \u0000. s must
 * be JSON the parser accepted, so quotes and backslashes pair up. */
static bool has_nul_escape(const char *s, size_t len)
{
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!in_string) {
            if (c == '"')
                in_string = true;
            continue;
        }
        if (c == '"') {
            in_string = false;
            continue;
        }
        if (c != '\\')
            continue;
        if (i + 5 < len && s[i + 1] == 'u' && s[i + 2] == '0' && s[i + 3] == '0' &&
            s[i + 4] == '0' && s[i + 5] == '0')
            return true;
        i++; /* skip the escaped character */
    }
    return false;
}

/* Parses value[0..len) as one JSON text into *out (caller frees). The bytes
 * are copied into a NUL-terminated buffer first, so cJSON never reads past
 * the record's value whatever its contents. */
static int parse_json(const void *value, size_t len, cJSON **out, of_event_error *err)
{
    int result = 0;
    char *copy = NULL;
    cJSON *root = NULL;
    const char *end = NULL;

    *out = NULL;
    if (value == NULL || len == 0) {
        result = of_event_error_set(err, OF_EVENT_ERR_MALFORMED_JSON, "value is empty");
        goto out;
    }
    if (!of_utf8_valid(value, len)) {
        result = of_event_error_set(err, OF_EVENT_ERR_MALFORMED_JSON, "value is not valid UTF-8");
        goto out;
    }
    copy = malloc(len + 1);
    if (copy == NULL) {
        result =
            of_event_error_set(err, OF_EVENT_ERR_NO_MEMORY, "could not parse value: out of memory");
        goto out;
    }
    memcpy(copy, value, len);
    copy[len] = '\0';
    /* cJSON cannot tell a syntax error from a failed allocation; a value of
     * at most 64 KiB makes the latter unlikely, so both count as malformed. */
    root = cJSON_ParseWithOpts(copy, &end, 0);
    if (root == NULL) {
        /* The error pointer is global to cJSON; compare addresses as integers
         * so that a pointer into another buffer is harmless. */
        uintptr_t at = (uintptr_t)cJSON_GetErrorPtr(), base = (uintptr_t)copy;
        size_t pos = at >= base && at <= base + len ? (size_t)(at - base) : 0;
        result = of_event_error_set(err, OF_EVENT_ERR_MALFORMED_JSON,
                                    "value is not valid JSON (near byte %zu)", pos + 1);
        goto out;
    }
    if (end == NULL || (uintptr_t)end < (uintptr_t)copy || (uintptr_t)end > (uintptr_t)copy + len) {
        result = of_event_error_set(err, OF_EVENT_ERR_MALFORMED_JSON, "value is not valid JSON");
        goto out;
    }
    for (const char *p = end; p < copy + len; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            result = of_event_error_set(err, OF_EVENT_ERR_MALFORMED_JSON,
                                        "value has extra bytes after the JSON text at byte %zu",
                                        (size_t)(p - copy) + 1);
            goto out;
        }
    }
    if (has_nul_escape(copy, (size_t)(end - copy))) {
        result = of_event_error_set(err, OF_EVENT_ERR_MALFORMED_JSON,
                                    "value contains the escape \\u0000, which is not supported");
        goto out;
    }
    *out = root;
    root = NULL;
out:
    cJSON_Delete(root);
    free(copy);
    return result;
}

static const char *json_type_name(const cJSON *item)
{
    if (cJSON_IsObject(item))
        return "an object";
    if (cJSON_IsArray(item))
        return "an array";
    if (cJSON_IsString(item))
        return "a string";
    if (cJSON_IsNumber(item))
        return "a number";
    if (cJSON_IsBool(item))
        return "a boolean";
    if (cJSON_IsNull(item))
        return "null";
    return "invalid";
}

/* ------------------------------------------------------------------------ */
/* Parsing                                                                   */
/* ------------------------------------------------------------------------ */

/* The headers of a record that the parser reads. */
typedef struct header_set {
    const of_header_view *specversion; /* ce_specversion */
    const of_header_view *id;          /* ce_id */
    const of_header_view *type;        /* ce_type */
    const of_header_view *source;      /* ce_source */
    const of_header_view *time;        /* ce_time */
    const of_header_view *subject;     /* ce_subject */
    const of_header_view *ctype;       /* content-type (name compared ignoring case) */
    size_t n_ce;                       /* headers whose name starts with "ce_" */
} header_set;

static const char *hval(const of_header_view *h)
{
    return h->value != NULL ? h->value : "";
}

static size_t hlen(const of_header_view *h)
{
    return h->value != NULL ? h->len : 0;
}

/* Sorts the record's headers into hs; rejects duplicates and too many ce_ headers. */
static int collect_headers(const of_record_view *rec, header_set *hs, of_event_error *err)
{
    const char *ce_names[OF_EVENT_CE_HEADERS_MAX];
    static const struct {
        const char *name; /* header name */
        size_t offset;    /* where it lands in header_set */
    } known[] = {
        {"ce_specversion", offsetof(header_set, specversion)},
        {"ce_id", offsetof(header_set, id)},
        {"ce_type", offsetof(header_set, type)},
        {"ce_source", offsetof(header_set, source)},
        {"ce_time", offsetof(header_set, time)},
        {"ce_subject", offsetof(header_set, subject)},
    };

    memset(hs, 0, sizeof *hs);
    if (rec->headers == NULL)
        return 0;
    for (size_t i = 0; i < rec->n_headers; i++) {
        const of_header_view *h = &rec->headers[i];
        if (h->name == NULL)
            continue;
        if (strcasecmp(h->name, "content-type") == 0) {
            if (hs->ctype != NULL)
                return of_event_error_set(err, OF_EVENT_ERR_INVALID_ATTRIBUTE,
                                          "duplicate header \"content-type\"");
            hs->ctype = h;
            continue;
        }
        if (strncmp(h->name, "ce_", 3) != 0)
            continue;
        if (hs->n_ce == OF_EVENT_CE_HEADERS_MAX)
            return of_event_error_set(err, OF_EVENT_ERR_INVALID_ATTRIBUTE,
                                      "record has more than %d \"ce_\" headers",
                                      OF_EVENT_CE_HEADERS_MAX);
        for (size_t k = 0; k < hs->n_ce; k++) {
            if (strcmp(ce_names[k], h->name) == 0) {
                /* Only name known attributes: an extension's name is untrusted text. */
                for (size_t j = 0; j < sizeof known / sizeof known[0]; j++) {
                    if (strcmp(known[j].name, h->name) == 0)
                        return of_event_error_set(err, OF_EVENT_ERR_INVALID_ATTRIBUTE,
                                                  "duplicate header \"%s\"", known[j].name);
                }
                return of_event_error_set(err, OF_EVENT_ERR_INVALID_ATTRIBUTE,
                                          "duplicate extension header at position %zu", i + 1);
            }
        }
        ce_names[hs->n_ce++] = h->name;
        for (size_t j = 0; j < sizeof known / sizeof known[0]; j++) {
            if (strcmp(known[j].name, h->name) == 0) {
                const of_header_view **slot =
                    (const of_header_view **)((char *)hs + known[j].offset);
                *slot = h;
                break;
            }
        }
    }
    return 0;
}

/* Reads a required header, rejecting absence and NUL bytes. */
static int need_header(const of_header_view *h, const char *name, of_event_error *err)
{
    char label[64];
    if (h == NULL)
        return of_event_error_set(err, OF_EVENT_ERR_MISSING_ATTRIBUTE, "missing header \"%s\"",
                                  name);
    snprintf(label, sizeof label, "header \"%s\"", name);
    return check_nul(label, hval(h), hlen(h), err);
}

static int parse_binary(const of_record_view *rec, const header_set *hs, of_event *ev,
                        of_event_error *err)
{
    int result;
    cJSON *root = NULL;

    ev->mode = OF_EVENT_MODE_BINARY;
    result = need_header(hs->specversion, "ce_specversion", err);
    if (result != 0)
        goto out;
    result = check_specversion("header \"ce_specversion\"", hval(hs->specversion),
                               hlen(hs->specversion), ev->specversion, err);
    if (result != 0)
        goto out;
    result = need_header(hs->id, "ce_id", err);
    if (result != 0)
        goto out;
    result = check_id("header \"ce_id\"", hval(hs->id), hlen(hs->id), ev->id, err);
    if (result != 0)
        goto out;
    result = need_header(hs->type, "ce_type", err);
    if (result != 0)
        goto out;
    result = check_type("header \"ce_type\"", hval(hs->type), hlen(hs->type), ev->type, err);
    if (result != 0)
        goto out;
    result = need_header(hs->source, "ce_source", err);
    if (result != 0)
        goto out;
    result = check_printable("header \"ce_source\"", hval(hs->source), hlen(hs->source),
                             OF_EVENT_SOURCE_MAX, ev->source, err);
    if (result != 0)
        goto out;
    if (hs->subject != NULL) {
        result = need_header(hs->subject, "ce_subject", err);
        if (result != 0)
            goto out;
        result = check_printable("header \"ce_subject\"", hval(hs->subject), hlen(hs->subject),
                                 OF_EVENT_SUBJECT_MAX, ev->subject, err);
        if (result != 0)
            goto out;
        ev->has_subject = true;
    }
    if (hs->time != NULL) {
        result = need_header(hs->time, "ce_time", err);
        if (result != 0)
            goto out;
        result = check_time("header \"ce_time\"", hval(hs->time), hlen(hs->time), ev->time, err);
        if (result != 0)
            goto out;
        ev->has_time = true;
    }
    result = need_header(hs->ctype, "content-type", err);
    if (result != 0)
        goto out;
    result = check_content_type("header \"content-type\"", hval(hs->ctype), hlen(hs->ctype),
                                ev->datacontenttype, err);
    if (result != 0)
        goto out;
    if (!media_type_is(hval(hs->ctype), hlen(hs->ctype), CT_JSON)) {
        result = of_event_error_set(err, OF_EVENT_ERR_UNSUPPORTED_CONTENT_TYPE,
                                    "header \"content-type\" must be " CT_JSON " or " CT_CE_JSON);
        goto out;
    }
    result = parse_json(rec->value, rec->value_len, &root, err);
    if (result != 0)
        goto out;
    if (!cJSON_IsObject(root)) {
        result = of_event_error_set(err, OF_EVENT_ERR_DATA_NOT_OBJECT,
                                    "value must be a JSON object, not %s", json_type_name(root));
        goto out;
    }
    ev->data = root;
    root = NULL;
out:
    cJSON_Delete(root);
    return result;
}

/* Reads a string attribute of a structured event. Returns 0 with *p NULL when
 * it is absent (or null and optional), 0 with *p set, or an error. */
static int structured_string(const cJSON *root, const char *name, bool required, const char **p,
                             of_event_error *err)
{
    bool dup;
    const cJSON *item = of_event_json_member(root, name, &dup);

    *p = NULL;
    if (dup)
        return of_event_error_set(err, OF_EVENT_ERR_MALFORMED_JSON, "duplicate attribute \"%s\"",
                                  name);
    if (item == NULL || (!required && cJSON_IsNull(item))) {
        if (required)
            return of_event_error_set(err, OF_EVENT_ERR_MISSING_ATTRIBUTE,
                                      "missing attribute \"%s\"", name);
        return 0;
    }
    if (!cJSON_IsString(item) || item->valuestring == NULL)
        return of_event_error_set(err, OF_EVENT_ERR_INVALID_ATTRIBUTE,
                                  "attribute \"%s\" must be a string, not %s", name,
                                  json_type_name(item));
    *p = item->valuestring;
    return 0;
}

/* Parses a structured event from the already parsed value; takes root. */
static int parse_structured(cJSON *root, of_event *ev, of_event_error *err)
{
    int result;
    const char *s = NULL;
    const cJSON *data;
    bool dup;

    ev->mode = OF_EVENT_MODE_STRUCTURED;
    if (!cJSON_IsObject(root)) {
        result = of_event_error_set(err, OF_EVENT_ERR_MALFORMED_JSON,
                                    "structured event must be a JSON object, not %s",
                                    json_type_name(root));
        goto out;
    }
    result = structured_string(root, "specversion", true, &s, err);
    if (result != 0)
        goto out;
    result = check_specversion("attribute \"specversion\"", s, strlen(s), ev->specversion, err);
    if (result != 0)
        goto out;
    result = structured_string(root, "id", true, &s, err);
    if (result != 0)
        goto out;
    result = check_id("attribute \"id\"", s, strlen(s), ev->id, err);
    if (result != 0)
        goto out;
    result = structured_string(root, "type", true, &s, err);
    if (result != 0)
        goto out;
    result = check_type("attribute \"type\"", s, strlen(s), ev->type, err);
    if (result != 0)
        goto out;
    result = structured_string(root, "source", true, &s, err);
    if (result != 0)
        goto out;
    result =
        check_printable("attribute \"source\"", s, strlen(s), OF_EVENT_SOURCE_MAX, ev->source, err);
    if (result != 0)
        goto out;
    result = structured_string(root, "subject", false, &s, err);
    if (result != 0)
        goto out;
    if (s != NULL) {
        result = check_printable("attribute \"subject\"", s, strlen(s), OF_EVENT_SUBJECT_MAX,
                                 ev->subject, err);
        if (result != 0)
            goto out;
        ev->has_subject = true;
    }
    result = structured_string(root, "time", false, &s, err);
    if (result != 0)
        goto out;
    if (s != NULL) {
        result = check_time("attribute \"time\"", s, strlen(s), ev->time, err);
        if (result != 0)
            goto out;
        ev->has_time = true;
    }
    result = structured_string(root, "datacontenttype", false, &s, err);
    if (result != 0)
        goto out;
    if (s == NULL)
        s = CT_JSON;
    result =
        check_content_type("attribute \"datacontenttype\"", s, strlen(s), ev->datacontenttype, err);
    if (result != 0)
        goto out;
    if (!media_type_is(s, strlen(s), CT_JSON)) {
        result = of_event_error_set(err, OF_EVENT_ERR_UNSUPPORTED_CONTENT_TYPE,
                                    "attribute \"datacontenttype\" must be " CT_JSON);
        goto out;
    }
    if (of_event_json_member(root, "data_base64", NULL) != NULL) {
        result = of_event_error_set(err, OF_EVENT_ERR_UNSUPPORTED_CONTENT_TYPE,
                                    "attribute \"data_base64\" is not supported: data must be "
                                    "JSON");
        goto out;
    }
    data = of_event_json_member(root, "data", &dup);
    if (dup) {
        result =
            of_event_error_set(err, OF_EVENT_ERR_MALFORMED_JSON, "duplicate attribute \"data\"");
        goto out;
    }
    if (data == NULL) {
        result =
            of_event_error_set(err, OF_EVENT_ERR_MISSING_ATTRIBUTE, "missing attribute \"data\"");
        goto out;
    }
    if (!cJSON_IsObject(data)) {
        result = of_event_error_set(err, OF_EVENT_ERR_DATA_NOT_OBJECT,
                                    "attribute \"data\" must be a JSON object, not %s",
                                    json_type_name(data));
        goto out;
    }
    ev->data = cJSON_DetachItemViaPointer(root, (cJSON *)data);
out:
    cJSON_Delete(root);
    return result;
}

int of_event_parse(const of_record_view *rec, of_event *ev, of_event_error *err)
{
    int result;
    header_set hs;
    cJSON *root = NULL;

    error_clear(err);
    if (ev == NULL)
        return of_event_error_set(err, OF_EVENT_ERR_MISSING_ATTRIBUTE,
                                  "could not parse event: no event to fill");
    memset(ev, 0, sizeof *ev);
    if (rec == NULL) {
        result = of_event_error_set(err, OF_EVENT_ERR_MISSING_ATTRIBUTE,
                                    "could not parse event: no record");
        goto out;
    }
    if (rec->value_len > OF_EVENT_VALUE_MAX) {
        result = of_event_error_set(err, OF_EVENT_ERR_VALUE_TOO_LARGE,
                                    "value is %zu bytes, more than the limit of %d", rec->value_len,
                                    OF_EVENT_VALUE_MAX);
        goto out;
    }
    result = collect_headers(rec, &hs, err);
    if (result != 0)
        goto out;

    if (hs.ctype != NULL) {
        result = need_header(hs.ctype, "content-type", err);
        if (result != 0)
            goto out;
        if (media_type_is(hval(hs.ctype), hlen(hs.ctype), CT_CE_JSON)) {
            result = parse_json(rec->value, rec->value_len, &root, err);
            if (result != 0)
                goto out;
            result = parse_structured(root, ev, err);
            root = NULL;
            goto out;
        }
        if (media_type_is(hval(hs.ctype), hlen(hs.ctype), CT_CE_BATCH)) {
            result = of_event_error_set(err, OF_EVENT_ERR_UNSUPPORTED_CONTENT_TYPE,
                                        "batched mode (" CT_CE_BATCH ") is not supported");
            goto out;
        }
        result = parse_binary(rec, &hs, ev, err);
        goto out;
    }
    if (hs.n_ce > 0) {
        result = parse_binary(rec, &hs, ev, err);
        goto out;
    }
    /* No ce_ headers and no content type: a structured event sent without
     * its content type, or not a CloudEvent at all. */
    result = parse_json(rec->value, rec->value_len, &root, err);
    if (result == OF_EVENT_ERR_NO_MEMORY)
        goto out;
    if (result != 0 || of_event_json_member(root, "specversion", NULL) == NULL) {
        result = of_event_error_set(err, OF_EVENT_ERR_MISSING_ATTRIBUTE,
                                    "record has no \"ce_\" headers and no content type, and its "
                                    "value is not a structured event");
        goto out;
    }
    result = parse_structured(root, ev, err);
    root = NULL;
out:
    cJSON_Delete(root);
    if (result != 0)
        of_event_free(ev);
    return result;
}

void of_event_free(of_event *ev)
{
    if (ev == NULL)
        return;
    cJSON_Delete(ev->data);
    memset(ev, 0, sizeof *ev);
}

/* ------------------------------------------------------------------------ */
/* Building                                                                  */
/* ------------------------------------------------------------------------ */

static char *dup_text(const char *s, size_t len)
{
    char *p = malloc(len + 1);
    if (p != NULL)
        copy_text(p, s, len);
    return p;
}

int of_event_build(of_message *out, const char *topic, const char *key, const of_event_attrs *attrs,
                   const cJSON *data, of_event_error *err)
{
    int result;
    of_event ev; /* scratch space for the checked attributes */
    char *printed = NULL;
    size_t len;

    error_clear(err);
    if (out == NULL || attrs == NULL || topic == NULL || topic[0] == '\0')
        return of_event_error_set(err, OF_EVENT_ERR_MISSING_ATTRIBUTE,
                                  "could not build event: no message, topic or attributes");
    memset(&ev, 0, sizeof ev);
    if (attrs->id == NULL || attrs->type == NULL || attrs->source == NULL) {
        result = of_event_error_set(err, OF_EVENT_ERR_MISSING_ATTRIBUTE,
                                    "could not build event: \"ce_id\", \"ce_type\" and "
                                    "\"ce_source\" are required");
        goto out;
    }
    result = check_id("attribute \"ce_id\"", attrs->id, strlen(attrs->id), ev.id, err);
    if (result != 0)
        goto out;
    result = check_type("attribute \"ce_type\"", attrs->type, strlen(attrs->type), ev.type, err);
    if (result != 0)
        goto out;
    result = check_printable("attribute \"ce_source\"", attrs->source, strlen(attrs->source),
                             OF_EVENT_SOURCE_MAX, ev.source, err);
    if (result != 0)
        goto out;
    if (attrs->subject != NULL) {
        result = check_printable("attribute \"ce_subject\"", attrs->subject, strlen(attrs->subject),
                                 OF_EVENT_SUBJECT_MAX, ev.subject, err);
        if (result != 0)
            goto out;
    }
    if (attrs->time != NULL) {
        result = check_time("attribute \"ce_time\"", attrs->time,
                            strnlen(attrs->time, OF_EVENT_TIME_MAX + 1), ev.time, err);
        if (result != 0)
            goto out;
    } else if (of_event_time_now(ev.time) != 0) {
        result = of_event_error_set(err, OF_EVENT_ERR_INVALID_TIME,
                                    "could not build event: could not read the clock");
        goto out;
    }
    if (!cJSON_IsObject(data)) {
        result = of_event_error_set(err, OF_EVENT_ERR_DATA_NOT_OBJECT,
                                    "could not build event: data must be a JSON object, not %s",
                                    data == NULL ? "missing" : json_type_name(data));
        goto out;
    }
    printed = cJSON_PrintUnformatted(data);
    if (printed == NULL) {
        result =
            of_event_error_set(err, OF_EVENT_ERR_NO_MEMORY, "could not build event: out of memory");
        goto out;
    }
    len = strlen(printed);
    if (len > OF_EVENT_VALUE_MAX) {
        result = of_event_error_set(err, OF_EVENT_ERR_VALUE_TOO_LARGE,
                                    "value is %zu bytes, more than the limit of %d", len,
                                    OF_EVENT_VALUE_MAX);
        goto out;
    }
    /* cJSON prints strings as stored: refuse what a reader would reject. */
    if (!of_utf8_valid(printed, len)) {
        result = of_event_error_set(err, OF_EVENT_ERR_MALFORMED_JSON,
                                    "could not build event: data is not valid UTF-8");
        goto out;
    }

    out->topic = dup_text(topic, strlen(topic));
    out->id = dup_text(ev.id, strlen(ev.id));
    out->value = dup_text(printed, len);
    out->value_len = len;
    if (key != NULL) {
        out->key = dup_text(key, strlen(key));
        out->key_len = strlen(key);
    }
    if (out->topic == NULL || out->id == NULL || out->value == NULL ||
        (key != NULL && out->key == NULL) ||
        of_message_add_header(out, "ce_specversion", OF_EVENT_SPECVERSION,
                              strlen(OF_EVENT_SPECVERSION)) != 0 ||
        of_message_add_header(out, "ce_id", ev.id, strlen(ev.id)) != 0 ||
        of_message_add_header(out, "ce_type", ev.type, strlen(ev.type)) != 0 ||
        of_message_add_header(out, "ce_source", ev.source, strlen(ev.source)) != 0 ||
        of_message_add_header(out, "ce_time", ev.time, strlen(ev.time)) != 0 ||
        (attrs->subject != NULL &&
         of_message_add_header(out, "ce_subject", ev.subject, strlen(ev.subject)) != 0) ||
        of_message_add_header(out, "content-type", CT_JSON, strlen(CT_JSON)) != 0) {
        result =
            of_event_error_set(err, OF_EVENT_ERR_NO_MEMORY, "could not build event: out of memory");
        goto out;
    }
    result = 0;
out:
    cJSON_free(printed);
    if (result != 0)
        of_message_free(out);
    return result;
}
