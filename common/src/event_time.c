/* event_time.c: RFC 3339 times: parse to Unix milliseconds, format in UTC. */
#include "event_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

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
int ev_time_parse_n(const char *s, size_t len, int64_t *unix_ms)
{
    int year, month, day, hour, minute, second, ms = 0, off_h = 0, off_m = 0, off_sign = 0;
    size_t i;

    if (len < 20 || len > OF_EVENT_TIME_MAX)
        return OF_EINVAL;
    if (!digits(s, 4, &year) || s[4] != '-' || !digits(s + 5, 2, &month) || s[7] != '-' ||
        !digits(s + 8, 2, &day) || (s[10] != 'T' && s[10] != 't') || !digits(s + 11, 2, &hour) ||
        s[13] != ':' || !digits(s + 14, 2, &minute) || s[16] != ':' || !digits(s + 17, 2, &second))
        return OF_EINVAL;
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
            return OF_EINVAL;
        for (size_t k = n; k < 3; k++)
            ms *= 10;
    }
    if (i >= len)
        return OF_EINVAL;
    if (s[i] == 'Z' || s[i] == 'z') {
        if (i + 1 != len)
            return OF_EINVAL;
    } else if (s[i] == '+' || s[i] == '-') {
        off_sign = s[i] == '+' ? 1 : -1;
        if (i + 6 != len || !digits(s + i + 1, 2, &off_h) || s[i + 3] != ':' ||
            !digits(s + i + 4, 2, &off_m))
            return OF_EINVAL;
    } else {
        return OF_EINVAL;
    }
    if (month < 1 || month > 12 || day < 1 || day > days_in_month(year, month) || hour > 23 ||
        minute > 59 || second > 60 || off_h > 23 || off_m > 59)
        return OF_EINVAL;
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
    return ev_time_parse_n(text, strnlen(text, OF_EVENT_TIME_MAX + 1), NULL) == 0;
}

int of_event_time_parse(const char *text, int64_t *unix_ms)
{
    int64_t v;
    if (text == NULL || unix_ms == NULL)
        return OF_EINVAL;
    if (ev_time_parse_n(text, strnlen(text, OF_EVENT_TIME_MAX + 1), &v) != 0)
        return OF_EINVAL;
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
        return OF_EINVAL;
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
        return OF_EINVAL;
    return of_event_time_format((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, out);
}
