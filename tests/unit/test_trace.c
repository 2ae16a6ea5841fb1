/* test_trace.c: unit tests of W3C Trace Context (trace.h) and of the tracing extension in the
 * event parser: traceparent and tracestate cases from the recommendation, a seeded fuzz loop
 * over mutated values, new ids, the headers of a record to publish, and events in binary and
 * structured mode whose trace context is kept, or ignored (never rejected) when invalid. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "orderflow/event.h"
#include "orderflow/trace.h"
#include "event_fixture.h"

#define TP_VALID "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

static bool parse(const char *text, of_trace *t)
{
    return of_trace_parse(text, strlen(text), t);
}

static void test_traceparent_valid(void **state)
{
    of_trace t;
    char out[OF_TRACEPARENT_SIZE];
    assert_true(parse(TP_VALID, &t));
    assert_string_equal(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_string_equal(t.span_id, "00f067aa0ba902b7");
    assert_int_equal(t.flags, 0x01);
    of_trace_format(&t, out);
    assert_string_equal(out, TP_VALID);
    /* Flags are kept as given in version 00 (only "sampled" is defined). */
    assert_true(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", &t));
    assert_int_equal(t.flags, 0);
    assert_true(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff", &t));
    assert_int_equal(t.flags, 0xff);
    /* A later version: its first 55 characters, alone or followed by "-";
     * only the sampled flag is read; it is forwarded as version 00. */
    assert_true(parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09", &t));
    assert_int_equal(t.flags, 0x01);
    assert_true(
        parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future", &t));
    of_trace_format(&t, out);
    assert_string_equal(out, TP_VALID);
    /* Not NUL terminated: only len bytes are read. */
    assert_true(of_trace_parse(TP_VALID "garbage", 55, &t));
}

static void test_traceparent_invalid(void **state)
{
    static const char *const bad[] = {
        "",
        "00",
        /* version ff, and 00 with anything more */
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ",
        /* a later version followed by something else than "-" */
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        /* all-zero ids */
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        /* uppercase hex (HEXDIGLC), other characters, separators */
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
        "0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0G",
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
        /* short fields */
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
        " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    };
    of_trace t;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&t, 0x55, sizeof t);
        if (parse(bad[i], &t))
            fail_msg("accepted \"%s\"", bad[i]);
        assert_string_equal(t.trace_id, ""); /* zeroed */
    }
    /* A NUL byte inside, and NULL. */
    assert_false(
        of_trace_parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0\0", 55, &t));
    assert_false(of_trace_parse(NULL, 55, &t));
}

static bool state_ok(const char *text)
{
    return of_tracestate_valid(text, strlen(text));
}

static void test_tracestate(void **state)
{
    char long_state[OF_TRACESTATE_MAX + 2];
    char many[40 * 8];
    size_t k = 0;

    assert_true(state_ok("congo=t61rcWkgMzE"));
    assert_true(state_ok("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"));
    assert_true(state_ok(" rojo=00f067aa0ba902b7 ,\tcongo=t61rcWkgMzE\t"));
    assert_true(state_ok("rojo=1,,congo=2")); /* empty members are allowed */
    assert_true(state_ok("fw529a3039@dt=abc,a*b/c_d-e=x y"));
    assert_true(state_ok("1tenant@vendor=v"));
    assert_false(state_ok(""));
    assert_false(state_ok(" , "));           /* no member */
    assert_false(state_ok("Rojo=1"));        /* uppercase key */
    assert_false(state_ok("1rojo=1"));       /* a simple key starts with a letter */
    assert_false(state_ok("rojo"));          /* no value */
    assert_false(state_ok("rojo="));         /* empty value */
    assert_false(state_ok("rojo=a=b"));      /* "=" in a value */
    assert_false(state_ok("rojo=1,rojo=2")); /* a key twice */
    assert_false(state_ok("a@1vendor=x"));   /* a system id starts with a letter */
    assert_false(state_ok("a@b@c=x"));
    assert_false(state_ok("a@abcdefghijklmno=x")); /* system id over 14 */
    assert_false(of_tracestate_valid("a=\x01", 3));
    assert_false(of_tracestate_valid("a=b\0c", 5));
    assert_false(of_tracestate_valid("a=\xc3\xa9", 4));
    /* At most 32 members and OF_TRACESTATE_MAX characters. */
    for (int i = 0; i < 32; i++)
        k += (size_t)snprintf(many + k, sizeof many - k, "%sk%d=v", i ? "," : "", i);
    assert_true(state_ok(many));
    snprintf(many + k, sizeof many - k, ",k32=v");
    assert_false(state_ok(many));
    memset(long_state, 'x', sizeof long_state);
    memcpy(long_state, "k=", 2);
    long_state[OF_TRACESTATE_MAX] = '\0';
    assert_false(state_ok(long_state)); /* a value of 510 characters is too long anyway */
    snprintf(long_state, sizeof long_state, "a=%0254d,b=%0254d", 1, 2);
    assert_int_equal(strlen(long_state), 2 * 256 + 1);
    assert_false(state_ok(long_state));
    snprintf(long_state, sizeof long_state, "a=%0254d,b=%0253d", 1, 2);
    assert_int_equal(strlen(long_state), OF_TRACESTATE_MAX);
    assert_true(state_ok(long_state));
}

static void test_new_ids(void **state)
{
    of_trace a, b;
    char tp[OF_TRACEPARENT_SIZE];
    for (int i = 0; i < 200; i++) {
        memset(&a, 0, sizeof a);
        memset(&b, 0, sizeof b);
        assert_int_equal(of_trace_id_new(a.trace_id), 0);
        assert_int_equal(of_span_id_new(a.span_id), 0);
        assert_int_equal(of_trace_id_new(b.trace_id), 0);
        assert_int_equal(of_span_id_new(b.span_id), 0);
        assert_string_not_equal(a.trace_id, b.trace_id);
        assert_string_not_equal(a.span_id, b.span_id);
        /* What is drawn is what a receiver accepts. */
        a.flags = OF_TRACE_FLAG_SAMPLED;
        of_trace_format(&a, tp);
        assert_int_equal(strlen(tp), OF_TRACEPARENT_LEN);
        assert_true(parse(tp, &b));
        assert_memory_equal(&a, &b, sizeof a);
    }
    /* Trace ids start with the time: two drawn a while apart sort in order. */
    assert_int_equal(of_trace_id_new(a.trace_id), 0);
    struct timespec ts = {0, 3 * 1000 * 1000};
    nanosleep(&ts, NULL);
    assert_int_equal(of_trace_id_new(b.trace_id), 0);
    assert_true(memcmp(a.trace_id, b.trace_id, 12) < 0);
}

/* A seeded fuzz loop: mutations of valid values never crash, never read past
 * their length (ASan builds), and whatever is accepted formats back to a
 * value that parses to the same trace. */
static uint64_t rng = 0x9e3779b97f4a7c15u;
static uint32_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

static void test_fuzz(void **state)
{
    static const char alphabet[] = "0123456789abcdefABCDEF-_ ,=@*/\t\x01\x7f\xff";
    static const char *const seeds[] = {
        TP_VALID,
        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
        "fw529a3039@dt=abc, a=b",
    };
    char buf[128];
    of_trace t, again;
    char tp[OF_TRACEPARENT_SIZE];
    size_t accepted = 0, accepted_states = 0;
    for (int round = 0; round < 200000; round++) {
        const char *seed = seeds[next_rand() % 4];
        size_t len = strlen(seed);
        memcpy(buf, seed, len);
        int edits = 1 + (int)(next_rand() % 3);
        for (int e = 0; e < edits; e++) {
            uint32_t r = next_rand();
            size_t at = len ? r % len : 0;
            switch ((r >> 16) % 4) {
            case 0: /* replace */
                if (len)
                    buf[at] = alphabet[next_rand() % (sizeof alphabet - 1)];
                break;
            case 1: /* delete */
                if (len) {
                    memmove(buf + at, buf + at + 1, len - at - 1);
                    len--;
                }
                break;
            case 2: /* insert */
                if (len < sizeof buf - 1) {
                    memmove(buf + at + 1, buf + at, len - at);
                    buf[at] = alphabet[next_rand() % (sizeof alphabet - 1)];
                    len++;
                }
                break;
            default: /* cut */
                len = at;
                break;
            }
        }
        /* Exactly len bytes, on the heap, so ASan sees a read past them. */
        char *copy = malloc(len ? len : 1);
        assert_non_null(copy);
        memcpy(copy, buf, len);
        if (of_trace_parse(copy, len, &t)) {
            accepted++;
            assert_int_equal(strlen(t.trace_id), OF_TRACE_ID_LEN);
            assert_int_equal(strlen(t.span_id), OF_SPAN_ID_LEN);
            of_trace_format(&t, tp);
            assert_true(parse(tp, &again));
            assert_memory_equal(&t, &again, sizeof t);
        }
        if (of_tracestate_valid(copy, len)) {
            accepted_states++;
            for (size_t i = 0; i < len; i++)
                assert_true((copy[i] >= 0x20 && copy[i] < 0x7f) || copy[i] == '\t');
        }
        free(copy);
    }
    /* The loop does reach both sides of each check. */
    assert_true(accepted > 100);
    assert_true(accepted_states > 100);
}

static const char *header(const of_message *m, const char *name)
{
    for (size_t i = 0; i < m->n_headers; i++)
        if (strcmp(m->headers[i].name, name) == 0)
            return m->headers[i].value;
    return NULL;
}

static size_t header_count(const of_message *m, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < m->n_headers; i++)
        n += strcmp(m->headers[i].name, name) == 0;
    return n;
}

static void test_put(void **state)
{
    of_message m = {0};
    of_trace t;
    assert_true(parse(TP_VALID, &t));
    assert_int_equal(of_message_add_header(&m, "ce_id", "x", 1), 0);
    assert_int_equal(of_message_add_header(&m, OF_TRACEPARENT_HEADER, "old", 3), 0);
    assert_int_equal(of_message_add_header(&m, OF_TRACESTATE_HEADER, "old=1", 5), 0);
    assert_int_equal(of_trace_put(&m, &t, "rojo=1"), 0);
    assert_string_equal(header(&m, OF_TRACEPARENT_HEADER), TP_VALID);
    assert_string_equal(header(&m, OF_TRACESTATE_HEADER), "rojo=1");
    assert_int_equal(header_count(&m, OF_TRACEPARENT_HEADER), 1);
    assert_int_equal(header_count(&m, OF_TRACESTATE_HEADER), 1);
    assert_string_equal(header(&m, "ce_id"), "x");
    /* No tracestate: none is sent. */
    assert_int_equal(of_trace_put(&m, &t, ""), 0);
    assert_null(header(&m, OF_TRACESTATE_HEADER));
    assert_int_equal(m.n_headers, 2);
    of_message_free(&m);
}

/* Events: binary and structured mode, valid and invalid trace context. */

#define H_TP(v) H("ce_traceparent", v)
#define H_TS(v) H("ce_tracestate", v)

static int parse_event(const of_header_view *h, size_t n, const char *value, of_event *ev)
{
    of_event_error err;
    of_record_view rec = {.topic = "t",
                          .partition = 0,
                          .offset = 1,
                          .value = value,
                          .value_len = strlen(value),
                          .headers = h,
                          .n_headers = n};
    return of_event_parse(&rec, ev, &err);
}

static void test_event_binary(void **state)
{
    of_event ev;
    const of_header_view with[] = {
        H_SPEC, H_ID, H_TYPE, H_SOURCE, H_CT, H_TP(TP_VALID), H_TS("congo=t61rcWkgMzE")};
    assert_int_equal(parse_event(with, 7, DATA, &ev), 0);
    assert_true(ev.has_trace);
    assert_string_equal(ev.trace.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_string_equal(ev.trace.span_id, "00f067aa0ba902b7");
    assert_string_equal(ev.tracestate, "congo=t61rcWkgMzE");
    of_event_free(&ev);

    const of_header_view none[] = {H_SPEC, H_ID, H_TYPE, H_SOURCE, H_CT};
    assert_int_equal(parse_event(none, 5, DATA, &ev), 0);
    assert_false(ev.has_trace);
    assert_string_equal(ev.trace.trace_id, "");
    of_event_free(&ev);

    /* Invalid values are ignored: the event is accepted without a trace. */
    static const of_header_view bad[][7] = {
        {H_SPEC, H_ID, H_TYPE, H_SOURCE, H_CT, H_TP("00-0-0-01"), H_TS("congo=1")},
        {H_SPEC, H_ID, H_TYPE, H_SOURCE, H_CT,
         H_TP("00-00000000000000000000000000000000-00f067aa0ba902b7-01"), H_TS("congo=1")},
        {H_SPEC, H_ID, H_TYPE, H_SOURCE, H_CT,
         H_TP("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\0"), H_TS("congo=1")},
        {H_SPEC, H_ID, H_TYPE, H_SOURCE, H_CT, H_TP(""), H_TS("congo=1")},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(parse_event(bad[i], 7, DATA, &ev), 0);
        assert_false(ev.has_trace);
        assert_string_equal(ev.tracestate, ""); /* never without its traceparent */
        of_event_free(&ev);
    }
    /* A tracestate that does not look valid is dropped, the traceparent kept. */
    const of_header_view bad_state[] = {
        H_SPEC, H_ID, H_TYPE, H_SOURCE, H_CT, H_TP(TP_VALID), H_TS("Not A List")};
    assert_int_equal(parse_event(bad_state, 7, DATA, &ev), 0);
    assert_true(ev.has_trace);
    assert_string_equal(ev.tracestate, "");
    of_event_free(&ev);
    /* A header with a NULL value is an empty one: ignored. */
    const of_header_view null_value[] = {H_SPEC,   H_ID, H_TYPE,
                                         H_SOURCE, H_CT, {"ce_traceparent", NULL, 0}};
    assert_int_equal(parse_event(null_value, 6, DATA, &ev), 0);
    assert_false(ev.has_trace);
    of_event_free(&ev);
    /* Two ce_traceparent headers break the envelope rule that no ce_ header
     * appears twice, as they did before the extension was read. */
    const of_header_view twice[] = {H_SPEC, H_ID,           H_TYPE,        H_SOURCE,
                                    H_CT,   H_TP(TP_VALID), H_TP(TP_VALID)};
    assert_int_equal(parse_event(twice, 7, DATA, &ev), OF_EVENT_ERR_INVALID_ATTRIBUTE);
}

static void test_event_structured(void **state)
{
    of_event ev;
    const of_header_view ct[] = {H("content-type", "application/cloudevents+json")};
    assert_int_equal(parse_event(ct, 1,
                                 STRUCTURED("\"traceparent\":\"" TP_VALID
                                            "\",\"tracestate\":\"rojo=1\",\"data\":{}"),
                                 &ev),
                     0);
    assert_true(ev.has_trace);
    assert_string_equal(ev.trace.span_id, "00f067aa0ba902b7");
    assert_string_equal(ev.tracestate, "rojo=1");
    of_event_free(&ev);
    /* ce_ headers are not read in structured mode. */
    const of_header_view ct_tp[] = {H("content-type", "application/cloudevents+json"),
                                    H_TP(TP_VALID)};
    assert_int_equal(parse_event(ct_tp, 2, STRUCTURED("\"data\":{}"), &ev), 0);
    assert_false(ev.has_trace);
    of_event_free(&ev);
    /* Not a string, invalid, or twice: ignored, the event accepted. */
    static const char *const bad[] = {
        STRUCTURED("\"traceparent\":1,\"data\":{}"),
        STRUCTURED("\"traceparent\":null,\"tracestate\":\"rojo=1\",\"data\":{}"),
        STRUCTURED("\"traceparent\":\"00-abc\",\"data\":{}"),
        STRUCTURED("\"traceparent\":\"" TP_VALID "\",\"traceparent\":\"" TP_VALID "\",\"data\":{}"),
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(parse_event(ct, 1, bad[i], &ev), 0);
        assert_false(ev.has_trace);
        assert_string_equal(ev.tracestate, "");
        of_event_free(&ev);
    }
}

/* What orderflow writes (of_event_build + of_trace_put) it reads back. */
static void test_event_round_trip(void **state)
{
    of_message m = {0};
    of_event ev;
    of_event_error err;
    of_trace t;
    cJSON *data = cJSON_CreateObject();
    of_event_attrs attrs = {"evt-9", "order.created", "test/trace", NULL, NULL};
    assert_true(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-00", &t));
    assert_int_equal(of_event_build(&m, "t", "k", &attrs, data, &err), 0);
    assert_int_equal(of_trace_put(&m, &t, "rojo=00f067aa0ba902b7"), 0);
    of_header_view hv[16];
    for (size_t i = 0; i < m.n_headers; i++)
        hv[i] = (of_header_view){m.headers[i].name, m.headers[i].value, m.headers[i].len};
    of_record_view rec = {.topic = "t",
                          .value = m.value,
                          .value_len = m.value_len,
                          .headers = hv,
                          .n_headers = m.n_headers};
    assert_int_equal(of_event_parse(&rec, &ev, &err), 0);
    assert_true(ev.has_trace);
    assert_memory_equal(&ev.trace, &t, sizeof t);
    assert_string_equal(ev.tracestate, "rojo=00f067aa0ba902b7");
    of_event_free(&ev);
    of_message_free(&m);
    cJSON_Delete(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_traceparent_valid),
        cmocka_unit_test(test_traceparent_invalid),
        cmocka_unit_test(test_tracestate),
        cmocka_unit_test(test_new_ids),
        cmocka_unit_test(test_fuzz),
        cmocka_unit_test(test_put),
        cmocka_unit_test(test_event_binary),
        cmocka_unit_test(test_event_structured),
        cmocka_unit_test(test_event_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
