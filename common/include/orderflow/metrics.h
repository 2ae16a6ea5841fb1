/* metrics.h: a small metrics registry rendered in the Prometheus text format.
 *
 * A registry holds metric families (counters, gauges, histograms), each with
 * a name, a help text and a fixed list of label names. A family has one
 * series per distinct tuple of label values, created on first use and kept
 * in creation order. of_metrics_render() writes the text exposition format
 * 0.0.4: "# HELP" and "# TYPE" lines, label values escaped, histograms as
 * cumulative "_bucket{le=...}" series ending with le="+Inf", then "_sum" and
 * "_count". Values kept elsewhere (a relay's counters, a connection's
 * reconnects) are copied in by collectors, which run at the start of every
 * render.
 *
 * Threading: none. A process has one libuv loop and everything that touches
 * a registry runs on it, so there is no locking; calling into a registry
 * from another thread is a bug.
 *
 * Robustness: updates never fail the caller. A family whose registration
 * failed is NULL and every update on NULL is a no-op; a family stops adding
 * series at OF_METRICS_MAX_SERIES (later label tuples are counted as dropped
 * and logged once), so untrusted label values cannot exhaust memory.
 *
 * Ownership: the registry owns its families and series; names, help texts,
 * label names and values are copied. Family and series pointers stay valid
 * until of_metric_clear() (series) or of_metrics_free() (both). */
#ifndef ORDERFLOW_METRICS_H
#define ORDERFLOW_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "orderflow/error.h"

#define OF_METRICS_MAX_LABELS  8    /* label names per family */
#define OF_METRICS_MAX_BUCKETS 32   /* histogram upper bounds per family, +Inf excluded */
#define OF_METRICS_MAX_SERIES  1000 /* label tuples per family */

/* Content type of of_metrics_render()'s output, for the HTTP response. */
#define OF_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

typedef enum of_metric_type {
    OF_METRIC_COUNTER,   /* only goes up (of_metric_set is for mirroring a count kept elsewhere) */
    OF_METRIC_GAUGE,     /* goes up and down */
    OF_METRIC_HISTOGRAM, /* observations counted in buckets, with sum and count */
} of_metric_type;

typedef struct of_metric of_metric;               /* a family (private to metrics.c) */
typedef struct of_metric_series of_metric_series; /* one label tuple of a family (private) */
typedef struct of_metrics of_metrics;

/* Refreshes values kept elsewhere; runs at the start of every render. */
typedef void (*of_metrics_collect_fn)(void *arg, of_metrics *m);

/* One registered collector. */
typedef struct of_metrics_collector {
    of_metrics_collect_fn fn; /* function to call */
    void *arg;                /* its argument (caller's) */
} of_metrics_collector;

/* The registry; embed it anywhere and of_metrics_init() it. */
struct of_metrics {
    of_metric **families;             /* families in registration order (owned) */
    size_t n_families;                /* used entries */
    size_t cap_families;              /* allocated entries */
    of_metrics_collector *collectors; /* collectors in registration order (owned array) */
    size_t n_collectors;              /* used entries */
    size_t cap_collectors;            /* allocated entries */
};

void of_metrics_init(of_metrics *m);
/* Frees every family and series; m can be initialised again. */
void of_metrics_free(of_metrics *m);

/* Registers a family. name must match [a-zA-Z_:][a-zA-Z0-9_:]* and be new in
 * m; label names must match [a-zA-Z_][a-zA-Z0-9_]*, not start with "__", and
 * a histogram may not use "le". bounds (histograms) must be finite and
 * strictly increasing; +Inf is implied. Returns the family, or NULL (reason
 * logged) on bad input or without memory. A family without labels has its
 * one series from the start, so it renders as 0 before the first update. */
of_metric *of_metrics_counter(of_metrics *m, const char *name, const char *help,
                              const char *const *labels, size_t n_labels)
    __attribute__((warn_unused_result));
of_metric *of_metrics_gauge(of_metrics *m, const char *name, const char *help,
                            const char *const *labels, size_t n_labels)
    __attribute__((warn_unused_result));
of_metric *of_metrics_histogram(of_metrics *m, const char *name, const char *help,
                                const char *const *labels, size_t n_labels, const double *bounds,
                                size_t n_bounds) __attribute__((warn_unused_result));
/* The family registered under name, or NULL. */
of_metric *of_metrics_find(const of_metrics *m, const char *name);

/* Registers fn to run at the start of every render. Returns 0, OF_EINVAL or OF_ENOMEM. */
int of_metrics_add_collector(of_metrics *m, of_metrics_collect_fn fn, void *arg)
    __attribute__((warn_unused_result));

/* The series for values (one per label name of f; NULL when f has none),
 * created on first use. Returns NULL when f is NULL, a value is NULL, the
 * family is full or memory ran out. Keep the pointer to skip the lookup. */
of_metric_series *of_metric_with(of_metric *f, const char *const *values);

/* Updates on a series; a NULL series is ignored, and so is an update that
 * does not fit the type (observe on a counter, a negative or NaN counter
 * increment, add or set on a histogram). */
void of_series_add(of_metric_series *s, double v);     /* counter, gauge */
void of_series_set(of_metric_series *s, double v);     /* gauge; counter when mirroring */
void of_series_observe(of_metric_series *s, double v); /* histogram */

/* Shorthands: of_metric_with() then the update. */
void of_metric_add(of_metric *f, const char *const *values, double v);
void of_metric_set(of_metric *f, const char *const *values, double v);
void of_metric_observe(of_metric *f, const char *const *values, double v);

/* Drops every series of f (for gauges rebuilt from a snapshot, such as the
 * lag of the partitions currently assigned); pointers to them become invalid.
 * A family without labels keeps its one series, reset to 0. */
void of_metric_clear(of_metric *f);

/* Runs the collectors, then writes every family to out. Families without a
 * series are written as their HELP and TYPE lines only. Returns 0, or -1 when
 * writing to out failed. */
int of_metrics_render(of_metrics *m, FILE *out) __attribute__((warn_unused_result));

#endif
