/* metrics.c: counters, gauges and histograms with labels, rendered in the Prometheus text format.
 */
#include "orderflow/metrics.h"

#include "orderflow/log.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* One label tuple of a family and its value(s). */
struct of_metric_series {
    of_metric *family; /* family the series belongs to */
    char **values;     /* label values (owned), one per family label */
    double value;      /* counter or gauge value */
    double sum;        /* histogram: sum of the observations */
    uint64_t count;    /* histogram: number of observations */
    uint64_t *buckets; /* histogram: observations per bound (not cumulative), n_bounds entries */
};

/* A metric family. */
struct of_metric {
    char *name;                            /* metric name (owned) */
    char *help;                            /* help text (owned) */
    of_metric_type type;                   /* counter, gauge or histogram */
    char *labels[OF_METRICS_MAX_LABELS];   /* label names (owned) */
    size_t n_labels;                       /* used entries of labels */
    double bounds[OF_METRICS_MAX_BUCKETS]; /* histogram upper bounds, increasing */
    size_t n_bounds;                       /* used entries of bounds */
    of_metric_series **series;             /* series in creation order (owned) */
    size_t n_series;                       /* used entries */
    size_t cap_series;                     /* allocated entries */
    uint64_t dropped;                      /* updates lost because the family was full */
};

void of_metrics_init(of_metrics *m)
{
    memset(m, 0, sizeof *m);
}

static void series_free(of_metric_series *s, size_t n_labels)
{
    if (s == NULL)
        return;
    for (size_t i = 0; s->values != NULL && i < n_labels; i++)
        free(s->values[i]);
    free(s->values);
    free(s->buckets);
    free(s);
}

static void family_free(of_metric *f)
{
    if (f == NULL)
        return;
    for (size_t i = 0; i < f->n_series; i++)
        series_free(f->series[i], f->n_labels);
    free(f->series);
    for (size_t i = 0; i < f->n_labels; i++)
        free(f->labels[i]);
    free(f->name);
    free(f->help);
    free(f);
}

void of_metrics_free(of_metrics *m)
{
    for (size_t i = 0; i < m->n_families; i++)
        family_free(m->families[i]);
    free(m->families);
    free(m->collectors);
    memset(m, 0, sizeof *m);
}

/* Names. */

static bool valid_name(const char *s, bool colon)
{
    if (s == NULL || *s == '\0')
        return false;
    for (const char *p = s; *p != '\0'; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                  (colon && c == ':') || (p != s && c >= '0' && c <= '9');
        if (!ok)
            return false;
    }
    return true;
}

of_metric *of_metrics_find(const of_metrics *m, const char *name)
{
    for (size_t i = 0; name != NULL && i < m->n_families; i++)
        if (strcmp(m->families[i]->name, name) == 0)
            return m->families[i];
    return NULL;
}

/* Creates a series for values (copied); NULL without memory. */
static of_metric_series *series_new(of_metric *f, const char *const *values)
{
    of_metric_series *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->family = f;
    if (f->n_labels > 0) {
        s->values = calloc(f->n_labels, sizeof *s->values);
        if (s->values == NULL)
            goto fail;
        for (size_t i = 0; i < f->n_labels; i++) {
            s->values[i] = strdup(values[i]);
            if (s->values[i] == NULL)
                goto fail;
        }
    }
    if (f->type == OF_METRIC_HISTOGRAM) {
        s->buckets = calloc(f->n_bounds ? f->n_bounds : 1, sizeof *s->buckets);
        if (s->buckets == NULL)
            goto fail;
    }
    return s;
fail:
    series_free(s, f->n_labels);
    return NULL;
}

static int append_series(of_metric *f, of_metric_series *s)
{
    if (f->n_series == f->cap_series) {
        size_t cap = f->cap_series ? f->cap_series * 2 : 4;
        of_metric_series **a = realloc(f->series, cap * sizeof *a);
        if (a == NULL)
            return OF_ENOMEM;
        f->series = a;
        f->cap_series = cap;
    }
    f->series[f->n_series++] = s;
    return 0;
}

static of_metric *family_new(of_metrics *m, of_metric_type type, const char *name, const char *help,
                             const char *const *labels, size_t n_labels, const double *bounds,
                             size_t n_bounds)
{
    of_metric *f = NULL;
    const char *why = NULL;
    of_metric_series *s = NULL;

    if (!valid_name(name, true)) {
        why = "invalid metric name";
        goto fail;
    }
    if (of_metrics_find(m, name) != NULL) {
        why = "already registered";
        goto fail;
    }
    if (n_labels > OF_METRICS_MAX_LABELS || (n_labels > 0 && labels == NULL)) {
        why = "too many labels";
        goto fail;
    }
    for (size_t i = 0; i < n_labels; i++) {
        if (!valid_name(labels[i], false) || strncmp(labels[i], "__", 2) == 0) {
            why = "invalid label name";
            goto fail;
        }
        if (type == OF_METRIC_HISTOGRAM && strcmp(labels[i], "le") == 0) {
            why = "a histogram cannot have a label \"le\"";
            goto fail;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(labels[i], labels[j]) == 0) {
                why = "duplicate label name";
                goto fail;
            }
        }
    }
    if (n_bounds > OF_METRICS_MAX_BUCKETS || (n_bounds > 0 && bounds == NULL)) {
        why = "too many buckets";
        goto fail;
    }
    for (size_t i = 0; i < n_bounds; i++) {
        if (!isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1])) {
            why = "bucket bounds must be finite and strictly increasing";
            goto fail;
        }
    }
    why = "out of memory";
    if (m->n_families == m->cap_families) {
        size_t cap = m->cap_families ? m->cap_families * 2 : 16;
        of_metric **a = realloc(m->families, cap * sizeof *a);
        if (a == NULL)
            goto fail;
        m->families = a;
        m->cap_families = cap;
    }
    f = calloc(1, sizeof *f);
    if (f == NULL)
        goto fail;
    f->type = type;
    f->name = strdup(name);
    f->help = strdup(help != NULL ? help : "");
    if (f->name == NULL || f->help == NULL)
        goto fail;
    for (size_t i = 0; i < n_labels; i++) {
        f->labels[i] = strdup(labels[i]);
        if (f->labels[i] == NULL)
            goto fail;
        f->n_labels++;
    }
    for (size_t i = 0; i < n_bounds; i++)
        f->bounds[i] = bounds[i];
    f->n_bounds = n_bounds;
    if (n_labels == 0) {
        s = series_new(f, NULL);
        if (s == NULL || append_series(f, s) != 0)
            goto fail;
        s = NULL;
    }
    m->families[m->n_families++] = f;
    return f;
fail:
    series_free(s, 0);
    family_free(f);
    of_log_error("could not register metric \"%s\": %s", name ? name : "(null)", why);
    return NULL;
}

of_metric *of_metrics_counter(of_metrics *m, const char *name, const char *help,
                              const char *const *labels, size_t n_labels)
{
    return family_new(m, OF_METRIC_COUNTER, name, help, labels, n_labels, NULL, 0);
}

of_metric *of_metrics_gauge(of_metrics *m, const char *name, const char *help,
                            const char *const *labels, size_t n_labels)
{
    return family_new(m, OF_METRIC_GAUGE, name, help, labels, n_labels, NULL, 0);
}

of_metric *of_metrics_histogram(of_metrics *m, const char *name, const char *help,
                                const char *const *labels, size_t n_labels, const double *bounds,
                                size_t n_bounds)
{
    return family_new(m, OF_METRIC_HISTOGRAM, name, help, labels, n_labels, bounds, n_bounds);
}

int of_metrics_add_collector(of_metrics *m, of_metrics_collect_fn fn, void *arg)
{
    if (fn == NULL)
        return OF_EINVAL;
    if (m->n_collectors == m->cap_collectors) {
        size_t cap = m->cap_collectors ? m->cap_collectors * 2 : 4;
        of_metrics_collector *a = realloc(m->collectors, cap * sizeof *a);
        if (a == NULL)
            return OF_ENOMEM;
        m->collectors = a;
        m->cap_collectors = cap;
    }
    m->collectors[m->n_collectors].fn = fn;
    m->collectors[m->n_collectors].arg = arg;
    m->n_collectors++;
    return 0;
}

/* Series and updates. */

of_metric_series *of_metric_with(of_metric *f, const char *const *values)
{
    of_metric_series *s;
    if (f == NULL)
        return NULL;
    if (f->n_labels == 0)
        return f->n_series > 0 ? f->series[0] : NULL;
    if (values == NULL)
        return NULL;
    for (size_t i = 0; i < f->n_labels; i++)
        if (values[i] == NULL)
            return NULL;
    /* Linear: families hold a few dozen series (topics x types x outcomes). */
    for (size_t i = 0; i < f->n_series; i++) {
        size_t k = 0;
        while (k < f->n_labels && strcmp(f->series[i]->values[k], values[k]) == 0)
            k++;
        if (k == f->n_labels)
            return f->series[i];
    }
    if (f->n_series >= OF_METRICS_MAX_SERIES) {
        if (f->dropped++ == 0)
            of_log_warn("metric \"%s\" has %d series; further label values are not recorded",
                        f->name, OF_METRICS_MAX_SERIES);
        return NULL;
    }
    s = series_new(f, values);
    if (s == NULL || append_series(f, s) != 0) {
        series_free(s, f->n_labels);
        return NULL;
    }
    return s;
}

void of_series_add(of_metric_series *s, double v)
{
    if (s == NULL || s->family->type == OF_METRIC_HISTOGRAM)
        return;
    if (s->family->type == OF_METRIC_COUNTER && !(v >= 0))
        return;
    s->value += v;
}

void of_series_set(of_metric_series *s, double v)
{
    if (s == NULL || s->family->type == OF_METRIC_HISTOGRAM)
        return;
    s->value = v;
}

void of_series_observe(of_metric_series *s, double v)
{
    of_metric *f;
    if (s == NULL || s->family->type != OF_METRIC_HISTOGRAM || isnan(v))
        return;
    f = s->family;
    /* Stored per bucket; render makes them cumulative. Beyond the last
     * bound an observation only counts in +Inf (= count). */
    for (size_t i = 0; i < f->n_bounds; i++) {
        if (v <= f->bounds[i]) {
            s->buckets[i]++;
            break;
        }
    }
    s->sum += v;
    s->count++;
}

void of_metric_add(of_metric *f, const char *const *values, double v)
{
    of_series_add(of_metric_with(f, values), v);
}

void of_metric_set(of_metric *f, const char *const *values, double v)
{
    of_series_set(of_metric_with(f, values), v);
}

void of_metric_observe(of_metric *f, const char *const *values, double v)
{
    of_series_observe(of_metric_with(f, values), v);
}

void of_metric_clear(of_metric *f)
{
    if (f == NULL)
        return;
    if (f->n_labels == 0) {
        of_metric_series *s = f->n_series > 0 ? f->series[0] : NULL;
        if (s != NULL) {
            s->value = s->sum = 0;
            s->count = 0;
            if (s->buckets != NULL)
                memset(s->buckets, 0, f->n_bounds * sizeof *s->buckets);
        }
        return;
    }
    for (size_t i = 0; i < f->n_series; i++)
        series_free(f->series[i], f->n_labels);
    f->n_series = 0;
}

/* Rendering. */

/* Formats v as Prometheus expects: integers without a fraction, NaN, +Inf,
 * -Inf, otherwise the shortest of %.15g / %.17g that reads back as v. */
static void format_value(char *buf, size_t size, double v)
{
    if (isnan(v)) {
        snprintf(buf, size, "NaN");
    } else if (isinf(v)) {
        snprintf(buf, size, "%s", v > 0 ? "+Inf" : "-Inf");
    } else if (v == floor(v) && fabs(v) < 1e15) {
        snprintf(buf, size, "%.0f", v == 0 ? 0.0 : v); /* no "-0" */
    } else {
        snprintf(buf, size, "%.15g", v);
        if (strtod(buf, NULL) != v)
            snprintf(buf, size, "%.17g", v);
    }
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when it is invalid. */
static size_t utf8_len(const unsigned char *s)
{
    unsigned char c = s[0];
    unsigned char lo = 0x80, hi = 0xBF;
    size_t n;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4;
    else
        return 0;
    /* Overlong forms, surrogates and code points past U+10FFFF. */
    if (c == 0xE0)
        lo = 0xA0;
    else if (c == 0xED)
        hi = 0x9F;
    else if (c == 0xF0)
        lo = 0x90;
    else if (c == 0xF4)
        hi = 0x8F;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return n;
}

/* Writes s escaped for a HELP line (\\ and \n) or a label value (also \");
 * bytes that are not valid UTF-8 become U+FFFD, since Prometheus rejects the
 * whole scrape otherwise. */
static void write_escaped(FILE *out, const char *s, bool label)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p != '\0') {
        size_t n = utf8_len(p);
        if (n == 0) {
            fputs("\xEF\xBF\xBD", out);
            p++;
        } else if (*p == '\\') {
            fputs("\\\\", out);
            p++;
        } else if (*p == '\n') {
            fputs("\\n", out);
            p++;
        } else if (label && *p == '"') {
            fputs("\\\"", out);
            p++;
        } else {
            fwrite(p, 1, n, out);
            p += n;
        }
    }
}

/* Writes {a="x",b="y"[,le="..."]}, or nothing when there is no label. */
static void write_labels(FILE *out, const of_metric *f, const of_metric_series *s, const char *le)
{
    if (f->n_labels == 0 && le == NULL)
        return;
    fputc('{', out);
    for (size_t i = 0; i < f->n_labels; i++) {
        fprintf(out, "%s%s=\"", i > 0 ? "," : "", f->labels[i]);
        write_escaped(out, s->values[i], true);
        fputc('"', out);
    }
    if (le != NULL)
        fprintf(out, "%sle=\"%s\"", f->n_labels > 0 ? "," : "", le);
    fputc('}', out);
}

static void write_sample(FILE *out, const of_metric *f, const char *suffix,
                         const of_metric_series *s, const char *le, double v)
{
    char num[64];
    format_value(num, sizeof num, v);
    fprintf(out, "%s%s", f->name, suffix);
    write_labels(out, f, s, le);
    fprintf(out, " %s\n", num);
}

static void write_family(FILE *out, const of_metric *f)
{
    static const char *const types[] = {"counter", "gauge", "histogram"};
    fprintf(out, "# HELP %s ", f->name);
    write_escaped(out, f->help, false);
    fprintf(out, "\n# TYPE %s %s\n", f->name, types[f->type]);
    for (size_t i = 0; i < f->n_series; i++) {
        const of_metric_series *s = f->series[i];
        if (f->type != OF_METRIC_HISTOGRAM) {
            write_sample(out, f, "", s, NULL, s->value);
            continue;
        }
        uint64_t cum = 0;
        char le[64];
        for (size_t b = 0; b < f->n_bounds; b++) {
            cum += s->buckets[b];
            format_value(le, sizeof le, f->bounds[b]);
            write_sample(out, f, "_bucket", s, le, (double)cum);
        }
        write_sample(out, f, "_bucket", s, "+Inf", (double)s->count);
        write_sample(out, f, "_sum", s, NULL, s->sum);
        write_sample(out, f, "_count", s, NULL, (double)s->count);
    }
}

int of_metrics_render(of_metrics *m, FILE *out)
{
    for (size_t i = 0; i < m->n_collectors; i++)
        m->collectors[i].fn(m->collectors[i].arg, m);
    for (size_t i = 0; i < m->n_families; i++)
        write_family(out, m->families[i]);
    if (fflush(out) != 0 || ferror(out))
        return OF_ENOMEM;
    return 0;
}
