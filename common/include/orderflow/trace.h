/* trace.h: W3C Trace Context (traceparent, tracestate), as the CloudEvents distributed tracing
 * extension carries it, and the ids of new traces and spans.
 *
 * A traceparent is four fields of lowercase hex joined by "-":
 *
 *   00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
 *   version trace-id (16 bytes)        parent-id (8)    trace-flags
 *
 * The trace-id names the whole trace, the parent-id the span of the sender
 * (the span the receiver's work is a child of); neither may be all zeros.
 * of_trace_parse() applies the receiver's rules of the W3C recommendation:
 * version 00 is exactly 55 characters; a later version (not ff) is read for
 * its first 55 characters when they are followed by nothing or by "-", and
 * only its sampled flag is kept; anything else is invalid. An invalid value
 * is not an error of the event that carries it: the receiver ignores it and
 * starts a new trace, as the recommendation says.
 *
 * tracestate is vendor data in a list of at most 32 key=value members, which
 * orderflow does not interpret: of_tracestate_valid() says whether text looks
 * like such a list (at most OF_TRACESTATE_MAX characters, keys and values of
 * the allowed characters, no key twice). A tracestate that does not is dropped,
 * and one never travels without the traceparent it came with.
 *
 * On Kafka the two are the headers ce_traceparent and ce_tracestate (binary
 * mode) or the attributes traceparent and tracestate (structured mode);
 * of_trace_put() sets the headers of a record to publish.
 *
 * Ids are drawn from the kernel's random source (uuid.h). A new trace-id
 * starts with the time in milliseconds (6 bytes) and ends with 10 random
 * bytes, as the recommendation suggests for ids with a non-random part (the
 * random bytes to the right), so that an index of trace ids grows at its
 * right edge; a span id is 8 random bytes.
 *
 * Ownership: of_trace is a value; nothing here allocates but of_trace_put(),
 * whose headers belong to the message. */
#ifndef ORDERFLOW_TRACE_H
#define ORDERFLOW_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "orderflow/message.h"

#define OF_TRACE_ID_LEN       32  /* hex digits of a trace-id */
#define OF_SPAN_ID_LEN        16  /* hex digits of a span id (parent-id) */
#define OF_TRACE_ID_SIZE      33  /* a trace-id and its NUL */
#define OF_SPAN_ID_SIZE       17  /* a span id and its NUL */
#define OF_TRACEPARENT_LEN    55  /* characters of a version 00 traceparent */
#define OF_TRACEPARENT_SIZE   56  /* a traceparent and its NUL */
#define OF_TRACESTATE_MAX     512 /* characters of a tracestate kept, at most */
#define OF_TRACESTATE_MEMBERS 32  /* list members of a tracestate, at most */
#define OF_TRACE_FLAG_SAMPLED 0x01
#define OF_TRACEPARENT_HEADER "ce_traceparent"
#define OF_TRACESTATE_HEADER  "ce_tracestate"

/* One span of a trace: for a parsed traceparent the sender's span (its
 * parent-id), for a step the step's own span. */
typedef struct of_trace {
    char trace_id[OF_TRACE_ID_SIZE]; /* 32 lowercase hex digits; "" when there is no trace */
    char span_id[OF_SPAN_ID_SIZE];   /* 16 lowercase hex digits */
    uint8_t flags;                   /* trace-flags; bit 0 is "sampled" */
} of_trace;

/* Parses text[0..len) (not NUL terminated, may hold any bytes) as a
 * traceparent. Returns true and fills out, or false with out zeroed when the
 * value is invalid. */
bool of_trace_parse(const char *text, size_t len, of_trace *out);

/* True when text[0..len) looks like a tracestate list: 1..OF_TRACESTATE_MAX
 * printable ASCII characters, at most OF_TRACESTATE_MEMBERS members separated
 * by "," (optional spaces or tabs around them, empty members allowed), each
 * key=value with a key of [a-z0-9_*-/] starting with a letter or digit (or
 * tenant@system) and a value of printable characters but "," and "=", no
 * key twice. */
bool of_tracestate_valid(const char *text, size_t len);

/* Writes t as a version 00 traceparent (t must hold a trace and a span). */
void of_trace_format(const of_trace *t, char out[OF_TRACEPARENT_SIZE]);

/* Draws a new trace-id (time, then random; see above). Returns 0 or
 * OF_ETRANSIENT when the random source failed. */
int of_trace_id_new(char out[OF_TRACE_ID_SIZE]) __attribute__((warn_unused_result));
/* Draws a new span id (random, never all zeros); same contract. */
int of_span_id_new(char out[OF_SPAN_ID_SIZE]) __attribute__((warn_unused_result));

/* Sets the headers ce_traceparent (t) and ce_tracestate (tracestate, or no
 * such header when it is NULL or "") of m, replacing the ones it has. Returns 0
 * or OF_ENOMEM (m keeps its other headers). */
int of_trace_put(of_message *m, const of_trace *t, const char *tracestate)
    __attribute__((warn_unused_result));

#endif
