/* test_metrics.c: the registry renders the exact Prometheus text format: families, labels,
 * escaping, histograms. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderflow/log.h"
#include "orderflow/metrics.h"

/* Renders m into a heap string (the caller frees it). */
static char *render(of_metrics *m)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    assert_non_null(mem);
    assert_int_equal(of_metrics_render(m, mem), 0);
    assert_int_equal(fclose(mem), 0);
    return buf;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s != '\0'; s++)
        n += *s == '\n';
    return n;
}

/* Keeps registration errors out of the test output; returns what was logged. */
static FILE *log_mem;
static char *log_buf;
static size_t log_len;

static int setup(void **state)
{
    log_mem = open_memstream(&log_buf, &log_len);
    if (log_mem == NULL)
        return -1;
    of_log_set_stream(log_mem);
    return 0;
}

static int teardown(void **state)
{
    of_log_set_stream(NULL);
    fclose(log_mem);
    free(log_buf);
    log_buf = NULL;
    return 0;
}

static void test_small_registry_exact_text(void **state)
{
    static const char *const labels[] = {"topic", "type"};
    static const double bounds[] = {0.25, 1, 2.5};
    of_metrics m;
    of_metrics_init(&m);
    of_metric *c = of_metrics_counter(&m, "t_events_total", "Events seen.", labels, 2);
    of_metric *g = of_metrics_gauge(&m, "t_backlog", "Rows waiting.\nSecond \\ line.", NULL, 0);
    of_metric *h =
        of_metrics_histogram(&m, "t_duration_seconds", "Time taken.", NULL, 0, bounds, 3);
    of_metric *e = of_metrics_gauge(&m, "t_lag", "Never set.", labels, 2);
    assert_non_null(c);
    assert_non_null(g);
    assert_non_null(h);
    assert_non_null(e);

    of_metric_add(c, (const char *const[]){"a", "x"}, 1);
    of_metric_add(c, (const char *const[]){"b", "y"}, 1);
    of_metric_add(c, (const char *const[]){"a", "x"}, 2);
    of_metric_set(g, NULL, 7);
    of_metric_add(g, NULL, -2.5);
    /* 0.25 sits on a bound: buckets are inclusive (le). 3 is past the last. */
    of_metric_observe(h, NULL, 0.25);
    of_metric_observe(h, NULL, 0.5);
    of_metric_observe(h, NULL, 0.75);
    of_metric_observe(h, NULL, 3);

    char *text = render(&m);
    assert_string_equal(text, "# HELP t_events_total Events seen.\n"
                              "# TYPE t_events_total counter\n"
                              "t_events_total{topic=\"a\",type=\"x\"} 3\n"
                              "t_events_total{topic=\"b\",type=\"y\"} 1\n"
                              "# HELP t_backlog Rows waiting.\\nSecond \\\\ line.\n"
                              "# TYPE t_backlog gauge\n"
                              "t_backlog 4.5\n"
                              "# HELP t_duration_seconds Time taken.\n"
                              "# TYPE t_duration_seconds histogram\n"
                              "t_duration_seconds_bucket{le=\"0.25\"} 1\n"
                              "t_duration_seconds_bucket{le=\"1\"} 3\n"
                              "t_duration_seconds_bucket{le=\"2.5\"} 3\n"
                              "t_duration_seconds_bucket{le=\"+Inf\"} 4\n"
                              "t_duration_seconds_sum 4.5\n"
                              "t_duration_seconds_count 4\n"
                              "# HELP t_lag Never set.\n"
                              "# TYPE t_lag gauge\n");
    free(text);
    of_metrics_free(&m);
}

static void test_labelled_histogram_and_empty_one(void **state)
{
    static const char *const labels[] = {"type"};
    static const double bounds[] = {0.1, 1};
    of_metrics m;
    of_metrics_init(&m);
    of_metric *h = of_metrics_histogram(&m, "t_latency_seconds", "Latency.", labels, 1, bounds, 2);
    of_metric *u = of_metrics_histogram(&m, "t_unused_seconds", "Unused.", NULL, 0, bounds, 2);
    assert_non_null(h);
    assert_non_null(u);
    of_metric_observe(h, (const char *const[]){"order.created"}, 0.05);
    of_metric_observe(h, (const char *const[]){"order.created"}, 2);
    of_metric_observe(h, (const char *const[]){"order.status.changed"}, 1);
    char *text = render(&m);
    assert_string_equal(text,
                        "# HELP t_latency_seconds Latency.\n"
                        "# TYPE t_latency_seconds histogram\n"
                        "t_latency_seconds_bucket{type=\"order.created\",le=\"0.1\"} 1\n"
                        "t_latency_seconds_bucket{type=\"order.created\",le=\"1\"} 1\n"
                        "t_latency_seconds_bucket{type=\"order.created\",le=\"+Inf\"} 2\n"
                        "t_latency_seconds_sum{type=\"order.created\"} 2.05\n"
                        "t_latency_seconds_count{type=\"order.created\"} 2\n"
                        "t_latency_seconds_bucket{type=\"order.status.changed\",le=\"0.1\"} 0\n"
                        "t_latency_seconds_bucket{type=\"order.status.changed\",le=\"1\"} 1\n"
                        "t_latency_seconds_bucket{type=\"order.status.changed\",le=\"+Inf\"} 1\n"
                        "t_latency_seconds_sum{type=\"order.status.changed\"} 1\n"
                        "t_latency_seconds_count{type=\"order.status.changed\"} 1\n"
                        "# HELP t_unused_seconds Unused.\n"
                        "# TYPE t_unused_seconds histogram\n"
                        "t_unused_seconds_bucket{le=\"0.1\"} 0\n"
                        "t_unused_seconds_bucket{le=\"1\"} 0\n"
                        "t_unused_seconds_bucket{le=\"+Inf\"} 0\n"
                        "t_unused_seconds_sum 0\n"
                        "t_unused_seconds_count 0\n");
    free(text);
    of_metrics_free(&m);
}

static void test_label_value_escaping(void **state)
{
    static const char *const labels[] = {"v"};
    of_metrics m;
    of_metrics_init(&m);
    of_metric *g = of_metrics_gauge(&m, "t_g", "Escapes.", labels, 1);
    assert_non_null(g);
    /* Quote, backslash and newline are escaped; valid UTF-8 (é) is kept;
     * a byte that is not UTF-8 (\xff) and a truncated sequence (\xc3 at the
     * end) become U+FFFD so that the scrape stays valid. */
    of_metric_set(g, (const char *const[]){"a\"b\\c\nd"}, 1);
    of_metric_set(g, (const char *const[]){"caf\xc3\xa9 \xff ok \xc3"}, 2);
    of_metric_set(g, (const char *const[]){""}, 3);
    char *text = render(&m);
    assert_string_equal(text, "# HELP t_g Escapes.\n"
                              "# TYPE t_g gauge\n"
                              "t_g{v=\"a\\\"b\\\\c\\nd\"} 1\n"
                              "t_g{v=\"caf\xc3\xa9 \xef\xbf\xbd ok \xef\xbf\xbd\"} 2\n"
                              "t_g{v=\"\"} 3\n");
    free(text);
    of_metrics_free(&m);
}

static void test_value_formatting(void **state)
{
    static const char *const labels[] = {"k"};
    of_metrics m;
    of_metrics_init(&m);
    of_metric *g = of_metrics_gauge(&m, "t_v", "Values.", labels, 1);
    assert_non_null(g);
    of_metric_set(g, (const char *const[]){"nan"}, NAN);
    of_metric_set(g, (const char *const[]){"inf"}, INFINITY);
    of_metric_set(g, (const char *const[]){"-inf"}, -INFINITY);
    of_metric_set(g, (const char *const[]){"tenth"}, 0.1);
    of_metric_set(g, (const char *const[]){"big"}, 1e20);
    of_metric_set(g, (const char *const[]){"negzero"}, -0.0);
    of_metric_set(g, (const char *const[]){"int"}, -42);
    of_metric_set(g, (const char *const[]){"third"}, 1.0 / 3.0);
    char *text = render(&m);
    assert_string_equal(text, "# HELP t_v Values.\n"
                              "# TYPE t_v gauge\n"
                              "t_v{k=\"nan\"} NaN\n"
                              "t_v{k=\"inf\"} +Inf\n"
                              "t_v{k=\"-inf\"} -Inf\n"
                              "t_v{k=\"tenth\"} 0.1\n"
                              "t_v{k=\"big\"} 1e+20\n"
                              "t_v{k=\"negzero\"} 0\n"
                              "t_v{k=\"int\"} -42\n"
                              "t_v{k=\"third\"} 0.33333333333333331\n");
    free(text);
    of_metrics_free(&m);
}

static void test_bad_registrations(void **state)
{
    static const char *const le[] = {"le"};
    static const char *const reserved[] = {"__x"};
    static const char *const dup[] = {"a", "a"};
    static const char *const dash[] = {"a-b"};
    static const double unsorted[] = {1, 0.5};
    static const double inf[] = {1, INFINITY};
    of_metrics m;
    of_metrics_init(&m);
    assert_non_null(of_metrics_counter(&m, "ok_total", "ok", NULL, 0));
    assert_null(of_metrics_counter(&m, "ok_total", "again", NULL, 0));
    assert_null(of_metrics_counter(&m, "1abc", "digit first", NULL, 0));
    assert_null(of_metrics_counter(&m, "a-b", "dash", NULL, 0));
    assert_null(of_metrics_counter(&m, "", "empty", NULL, 0));
    assert_null(of_metrics_counter(&m, NULL, "null", NULL, 0));
    assert_null(of_metrics_gauge(&m, "g1", "dash label", dash, 1));
    assert_null(of_metrics_gauge(&m, "g2", "reserved label", reserved, 1));
    assert_null(of_metrics_gauge(&m, "g3", "duplicate labels", dup, 2));
    assert_null(of_metrics_histogram(&m, "h1", "le label", le, 1, NULL, 0));
    assert_null(of_metrics_histogram(&m, "h2", "unsorted", NULL, 0, unsorted, 2));
    assert_null(of_metrics_histogram(&m, "h3", "infinite bound", NULL, 0, inf, 2));
    assert_non_null(of_metrics_gauge(&m, "ns:g_1", "colon and digits are fine", NULL, 0));
    fflush(log_mem);
    assert_non_null(log_buf);
    /* JSON-escaped in the log line. */
    assert_non_null(
        strstr(log_buf, "could not register metric \\\"ok_total\\\": already registered"));
    assert_int_equal(m.n_families, 2);
    assert_non_null(of_metrics_find(&m, "ns:g_1"));
    assert_null(of_metrics_find(&m, "g1"));
    of_metrics_free(&m);
}

static void test_update_rules(void **state)
{
    static const char *const labels[] = {"k"};
    of_metrics m;
    of_metrics_init(&m);
    of_metric *c = of_metrics_counter(&m, "t_c_total", "c", NULL, 0);
    of_metric *l = of_metrics_counter(&m, "t_l_total", "l", labels, 1);
    assert_non_null(c);
    assert_non_null(l);
    of_metric_add(c, NULL, 2);
    of_metric_add(c, NULL, -1);                       /* counters do not go down: ignored */
    of_metric_add(c, NULL, NAN);                      /* ignored */
    of_metric_observe(c, NULL, 5);                    /* not a histogram: ignored */
    of_metric_add(l, NULL, 1);                        /* labelled family without values: ignored */
    of_metric_add(l, (const char *const[]){NULL}, 1); /* NULL value: ignored */
    /* NULL families (failed registrations) are no-ops. */
    of_metric_add(NULL, NULL, 1);
    of_metric_observe(NULL, NULL, 1);
    of_series_set(NULL, 1);
    of_metric_clear(NULL);
    char *text = render(&m);
    assert_string_equal(text, "# HELP t_c_total c\n# TYPE t_c_total counter\nt_c_total 2\n"
                              "# HELP t_l_total l\n# TYPE t_l_total counter\n");
    free(text);
    /* Mirroring a count kept elsewhere. */
    of_metric_set(c, NULL, 40);
    of_series_add(of_metric_with(c, NULL), 2);
    text = render(&m);
    assert_non_null(strstr(text, "\nt_c_total 42\n"));
    free(text);
    of_metrics_free(&m);
}

static void test_clear(void **state)
{
    static const char *const labels[] = {"topic", "partition"};
    of_metrics m;
    of_metrics_init(&m);
    of_metric *lag = of_metrics_gauge(&m, "t_lag", "lag", labels, 2);
    of_metric *one = of_metrics_gauge(&m, "t_one", "one", NULL, 0);
    of_metric_set(lag, (const char *const[]){"t", "0"}, 5);
    of_metric_set(lag, (const char *const[]){"t", "1"}, 6);
    of_metric_set(one, NULL, 9);
    of_metric_clear(lag);
    of_metric_clear(one);
    of_metric_set(lag, (const char *const[]){"t", "1"}, 7);
    char *text = render(&m);
    assert_string_equal(
        text, "# HELP t_lag lag\n# TYPE t_lag gauge\nt_lag{topic=\"t\",partition=\"1\"} 7\n"
              "# HELP t_one one\n# TYPE t_one gauge\nt_one 0\n");
    free(text);
    of_metrics_free(&m);
}

static void test_series_cap(void **state)
{
    static const char *const labels[] = {"id"};
    char id[32];
    of_metrics m;
    of_metrics_init(&m);
    of_metric *c = of_metrics_counter(&m, "t_ids_total", "ids", labels, 1);
    for (int i = 0; i < OF_METRICS_MAX_SERIES + 5; i++) {
        snprintf(id, sizeof id, "id-%d", i);
        of_metric_add(c, (const char *const[]){id}, 1);
    }
    /* Existing series still update once the family is full. */
    of_metric_add(c, (const char *const[]){"id-0"}, 1);
    char *text = render(&m);
    assert_int_equal(count_lines(text), OF_METRICS_MAX_SERIES + 2);
    assert_non_null(strstr(text, "t_ids_total{id=\"id-0\"} 2\n"));
    assert_null(strstr(text, "id-1000\""));
    free(text);
    fflush(log_mem);
    assert_non_null(strstr(log_buf, "further label values are not recorded"));
    of_metrics_free(&m);
}

static double mirrored;

static void collect(void *arg, of_metrics *m)
{
    of_metric_set(arg, NULL, mirrored);
}

static void test_collector_runs_at_render(void **state)
{
    of_metrics m;
    of_metrics_init(&m);
    of_metric *c = of_metrics_counter(&m, "t_published_total", "p", NULL, 0);
    assert_int_equal(of_metrics_add_collector(&m, collect, c), 0);
    mirrored = 11;
    char *text = render(&m);
    assert_non_null(strstr(text, "\nt_published_total 11\n"));
    free(text);
    mirrored = 12;
    text = render(&m);
    assert_non_null(strstr(text, "\nt_published_total 12\n"));
    free(text);
    assert_int_equal(of_metrics_add_collector(&m, NULL, NULL), OF_EINVAL);
    of_metrics_free(&m);
}

static void test_write_error_is_reported(void **state)
{
    of_metrics m;
    of_metrics_init(&m);
    assert_non_null(of_metrics_gauge(&m, "t_g", "g", NULL, 0));
    FILE *full = fopen("/dev/full", "w");
    if (full == NULL)
        skip();
    assert_int_equal(of_metrics_render(&m, full), OF_ENOMEM);
    fclose(full);
    of_metrics_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_small_registry_exact_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_labelled_histogram_and_empty_one, setup, teardown),
        cmocka_unit_test_setup_teardown(test_label_value_escaping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_value_formatting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_registrations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_update_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clear, setup, teardown),
        cmocka_unit_test_setup_teardown(test_series_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_collector_runs_at_render, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_error_is_reported, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
