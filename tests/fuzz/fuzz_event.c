/* fuzz_event.c: libFuzzer target for the CloudEvents envelope parser, the typed decoders and their
 * round trips.
 *
 * Input format (text-friendly, so seeds are easy to write; see README.md):
 *
 *   name:value\n     one header per line; the value is every byte after the
 *                    first ':' up to the newline (it may contain NULs)
 *   name\n           a header whose value pointer is NULL
 *   @key:value\n     not a header: the record's key (the last one wins)
 *   \n               an empty line ends the headers
 *   <rest>           the record value, byte for byte
 *
 * Input that ends before the empty line has no value (NULL, as a Kafka
 * tombstone). At most MAX_HEADERS header lines are read; later lines are
 * skipped. Each header value is copied into its own buffer of exactly its
 * length, and the record value is the tail of the fuzzer's buffer, so
 * AddressSanitizer sees any read past the end of either.
 *
 * Beyond "no crash, no leak", the target checks properties and aborts when
 * one fails:
 *   1. an event accepted by the parser can be rebuilt by of_event_build()
 *      (unless printing made it too large), with its trace context put back
 *      by of_trace_put(), and the rebuilt record parses to the same
 *      attributes, trace context and tracestate, and prints to the same data;
 *   2. data accepted by a decoder that has an encoder re-encodes and decodes
 *      to the identical struct;
 *   3. a valid time survives parse -> format -> parse (to the millisecond);
 *   4. whatever the record, accepted or not, its dead letter can be stored:
 *      of_dlq_add() in both forms binds only text that Postgres accepts
 *      (valid UTF-8, no NUL) outside the bytea key and value, the key and
 *      value are the record's bytes, and the headers' JSON gives back every
 *      header byte for byte. This is what keeps a poison record from
 *      stalling a worker.
 *
 * With FUZZ_EVENT_DEBUG set in the environment, each input's parse result is
 * printed, which shows why a seed is rejected. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "domain/contract.h"
#include "orderflow/dlq.h"
#include "orderflow/event.h"
#include "orderflow/outbox.h"
#include "orderflow/text.h"

#define MAX_HEADERS 80

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_event: property failed: %s (line %d)\n", #cond, __LINE__);       \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Property 2 for one decoder/encoder pair. */
#define CHECK_REENCODE(type, decode, encode, json)                                                 \
    do {                                                                                           \
        type *a_ = calloc(1, sizeof(type)), *b_ = calloc(1, sizeof(type));                         \
        of_event_error e_;                                                                         \
        cJSON *enc_ = NULL;                                                                        \
        CHECK(a_ != NULL && b_ != NULL);                                                           \
        if (decode((json), a_, &e_) == 0) {                                                        \
            CHECK(encode(a_, &enc_, &e_) == 0);                                                    \
            CHECK(decode(enc_, b_, &e_) == 0);                                                     \
            CHECK(memcmp(a_, b_, sizeof(type)) == 0);                                              \
            cJSON_Delete(enc_);                                                                    \
        }                                                                                          \
        free(a_);                                                                                  \
        free(b_);                                                                                  \
    } while (0)

static void try_decoders(const cJSON *json)
{
    of_contract_data *any = malloc(sizeof *any);
    of_event_error err;
    CHECK(any != NULL);
    /* decoders without encoders: just run them */
    (void)of_order_created_decode(json, &any->u.order_created, &err);
    (void)of_return_requested_decode(json, &any->u.return_requested, &err);
    free(any);
    CHECK_REENCODE(of_order_status_update, of_order_status_update_decode,
                   of_order_status_update_encode, json);
    CHECK_REENCODE(of_order_status_changed, of_order_status_changed_decode,
                   of_order_status_changed_encode, json);
    CHECK_REENCODE(of_return_status_changed, of_return_status_changed_decode,
                   of_return_status_changed_encode, json);
    CHECK_REENCODE(of_order_deadline_expired, of_order_deadline_expired_decode,
                   of_order_deadline_expired_encode, json);
}

static void check_time(const char *text)
{
    int64_t ms, back;
    char out[OF_EVENT_TIME_MAX + 1];
    if (of_event_time_parse(text, &ms) != 0)
        return;
    if (of_event_time_format(ms, out) != 0)
        return; /* an offset moved it outside years 0000..9999 */
    CHECK(of_event_time_parse(out, &back) == 0);
    CHECK(back == ms);
}

/* Property 1: rebuild the event in binary mode and parse it again. */
static void check_rebuild(const of_event *ev)
{
    of_message m = {0};
    of_event ev2;
    of_event_error err;
    of_header_view h[10];
    of_event_attrs attrs = {ev->id, ev->type, ev->source, ev->has_subject ? ev->subject : NULL,
                            ev->has_time ? ev->time : NULL};
    char *p1 = NULL, *p2 = NULL;
    int rc = of_event_build(&m, "fuzz", ev->id, &attrs, ev->data, &err);

    if (rc == OF_EVENT_ERR_VALUE_TOO_LARGE)
        return; /* printing can lengthen numbers (1e2 -> 100) */
    CHECK(rc == 0);
    /* The trace context goes on as a step passes it on (machine.c). */
    if (ev->has_trace)
        CHECK(of_trace_put(&m, &ev->trace, ev->tracestate) == 0);
    CHECK(m.n_headers <= 10);
    for (size_t i = 0; i < m.n_headers; i++)
        h[i] = (of_header_view){m.headers[i].name, m.headers[i].value, m.headers[i].len};
    of_record_view rec = {.topic = m.topic,
                          .partition = -1,
                          .offset = -1,
                          .key = m.key,
                          .key_len = m.key_len,
                          .value = m.value,
                          .value_len = m.value_len,
                          .headers = h,
                          .n_headers = m.n_headers};
    rc = of_event_parse(&rec, &ev2, &err);
    if (rc != 0)
        fprintf(stderr, "fuzz_event: rebuilt event rejected: %s: %s\n", of_event_code_name(rc),
                err.reason);
    CHECK(rc == 0);
    CHECK(ev2.mode == OF_EVENT_MODE_BINARY);
    CHECK(strcmp(ev2.id, ev->id) == 0);
    CHECK(strcmp(ev2.type, ev->type) == 0);
    CHECK(strcmp(ev2.source, ev->source) == 0);
    CHECK(ev2.has_subject == ev->has_subject);
    CHECK(strcmp(ev2.subject, ev->subject) == 0);
    CHECK(ev2.has_time);
    CHECK(!ev->has_time || strcmp(ev2.time, ev->time) == 0);
    CHECK(ev2.has_trace == ev->has_trace);
    CHECK(memcmp(&ev2.trace, &ev->trace, sizeof ev->trace) == 0);
    CHECK(strcmp(ev2.tracestate, ev->tracestate) == 0);
    p1 = cJSON_PrintUnformatted(ev->data);
    p2 = cJSON_PrintUnformatted(ev2.data);
    CHECK(p1 != NULL && p2 != NULL);
    CHECK(strcmp(p1, p2) == 0);
    cJSON_free(p1);
    cJSON_free(p2);
    of_event_free(&ev2);
    of_message_free(&m);
}

/* Property 4 for one form of the dead letter. */
static void check_dead_letter_form(const of_record_view *rec, const of_message *dlq,
                                   const char *ce_id, const char *reason, of_dlq_form form)
{
    of_db_pipeline p;
    of_message back = {0};
    of_db_pipeline_init(&p);
    CHECK(of_dlq_add(&p, rec, dlq, "fuzz", ce_id, NULL, "FUZZ", reason, form) == 0);
    CHECK(p.n == 1);
    const of_db_cmd *c = &p.cmds[0];
    for (int i = 0; i < c->nparams; i++) {
        if (c->formats[i] == 1 || c->values[i] == NULL)
            continue;
        CHECK(of_text_storable(c->values[i], strlen(c->values[i])));
    }
    CHECK(rec->key == NULL || (c->lengths[4] == (int)rec->key_len &&
                               memcmp(c->values[4], rec->key, rec->key_len) == 0));
    CHECK(c->lengths[5] == (int)rec->value_len &&
          (rec->value_len == 0 || memcmp(c->values[5], rec->value, rec->value_len) == 0));
    CHECK(of_outbox_headers_parse(c->values[6], &back) == 0);
    CHECK(back.n_headers == rec->n_headers);
    for (size_t i = 0; i < rec->n_headers; i++) {
        CHECK(strcmp(back.headers[i].name, rec->headers[i].name) == 0);
        CHECK(back.headers[i].len == rec->headers[i].len);
        CHECK(rec->headers[i].len == 0 ||
              memcmp(back.headers[i].value, rec->headers[i].value, rec->headers[i].len) == 0);
    }
    of_message_free(&back);
    of_db_pipeline_free(&p);
}

/* Property 4: the record's dead letter, as the worker would write it. */
static void check_dead_letter(const of_record_view *rec, const char *ce_id, const char *reason)
{
    of_message dlq = {0};
    CHECK(of_dlq_build(&dlq, rec, "fuzz", "FUZZ", reason) == 0);
    check_dead_letter_form(rec, &dlq, ce_id, reason, OF_DLQ_AS_IS);
    check_dead_letter_form(rec, &dlq, ce_id, reason, OF_DLQ_ESCAPED);
    of_message_free(&dlq);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    of_header_view headers[MAX_HEADERS];
    char *names[MAX_HEADERS];
    void *values[MAX_HEADERS];
    size_t n = 0, pos = 0, key_len = 0;
    const uint8_t *key = NULL;
    bool have_value = false;
    of_event ev;
    of_event_error err;

    /* Split the input into header lines and the value. */
    while (pos < size) {
        const uint8_t *line = data + pos;
        const uint8_t *nl = memchr(line, '\n', size - pos);
        size_t len = nl != NULL ? (size_t)(nl - line) : size - pos;
        pos += len + (nl != NULL ? 1 : 0);
        if (len == 0 && nl != NULL) {
            have_value = true;
            break;
        }
        if (len >= 5 && memcmp(line, "@key:", 5) == 0) {
            key = line + 5;
            key_len = len - 5;
            continue;
        }
        if (n == MAX_HEADERS)
            continue;
        const uint8_t *colon = memchr(line, ':', len);
        size_t name_len = colon != NULL ? (size_t)(colon - line) : len;
        names[n] = malloc(name_len + 1);
        CHECK(names[n] != NULL);
        memcpy(names[n], line, name_len);
        names[n][name_len] = '\0';
        values[n] = NULL;
        headers[n] = (of_header_view){names[n], NULL, 0};
        if (colon != NULL) {
            size_t vlen = len - name_len - 1;
            values[n] = malloc(vlen > 0 ? vlen : 1);
            CHECK(values[n] != NULL);
            if (vlen > 0)
                memcpy(values[n], colon + 1, vlen);
            headers[n].value = values[n];
            headers[n].len = vlen;
        }
        n++;
    }

    of_record_view rec = {.topic = "fuzz",
                          .partition = 0,
                          .offset = 0,
                          .key = key,
                          .key_len = key_len,
                          .value = have_value ? data + pos : NULL,
                          .value_len = have_value ? size - pos : 0,
                          .headers = headers,
                          .n_headers = n};
    int rc = of_event_parse(&rec, &ev, &err);
    if (getenv("FUZZ_EVENT_DEBUG") != NULL)
        fprintf(stderr, "fuzz_event: %zu headers, value %zu bytes: %s %s\n", n, rec.value_len,
                of_event_code_name(rc), err.reason);
    CHECK(rc == err.code);
    CHECK(rc <= 0);
    CHECK(strlen(of_event_code_name(rc)) > 0);
    /* A handler's reason may quote any text: the record's own bytes stand in for it. */
    check_dead_letter(&rec, rc == 0 ? ev.id : NULL,
                      rc == 0 ? (have_value ? "" : "no value") : err.reason);
    if (have_value && size - pos < 200) {
        char reason[256];
        memcpy(reason, data + pos, size - pos);
        reason[size - pos] = '\0';
        check_dead_letter(&rec, NULL, reason);
    }
    if (rc == 0) {
        CHECK(err.reason[0] == '\0');
        CHECK(cJSON_IsObject(ev.data));
        CHECK(of_event_id_valid(ev.id));
        CHECK(!ev.has_time || of_event_time_valid(ev.time));
        if (ev.has_time)
            check_time(ev.time);
        of_contract_data *any = malloc(sizeof *any);
        CHECK(any != NULL);
        (void)of_contract_decode(&ev, any, &err);
        free(any);
        (void)of_contract_check_type(OF_TOPIC_ORDER_CREATED, ev.type, &err);
        (void)of_contract_check_type(OF_TOPIC_ORDER_STATUS, ev.type, &err);
        (void)of_contract_check_type(OF_TOPIC_RETURN_REQUESTED, ev.type, &err);
        try_decoders(ev.data);
        check_rebuild(&ev);
        of_event_free(&ev);
    } else {
        CHECK(ev.data == NULL);
        CHECK(err.reason[0] != '\0');
    }
    /* The value itself, as JSON, through every decoder too: this reaches the
     * decoders even when the fuzzer has not found valid headers. */
    if (have_value && size - pos <= OF_EVENT_VALUE_MAX) {
        /* Parsed from a NUL-terminated copy, like of_event_parse() does, but
         * without its UTF-8 and \u0000 checks: the decoders must cope with
         * any tree cJSON can produce. */
        char *copy = malloc(size - pos + 1);
        CHECK(copy != NULL);
        memcpy(copy, data + pos, size - pos);
        copy[size - pos] = '\0';
        cJSON *json = cJSON_Parse(copy);
        if (json != NULL) {
            try_decoders(json);
            cJSON_Delete(json);
        }
        free(copy);
    }
    for (size_t i = 0; i < n; i++) {
        free(names[i]);
        free(values[i]);
    }
    return 0;
}
