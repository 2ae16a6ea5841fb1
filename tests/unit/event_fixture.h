/* event_fixture.h: the record headers and values that the event parser's unit tests build on
 * (test_event.c: the table of parse cases; test_event_fields.c: the parsed fields and limits). Not
 * a test itself. */
#ifndef ORDERFLOW_TEST_EVENT_FIXTURE_H
#define ORDERFLOW_TEST_EVENT_FIXTURE_H

#include "orderflow/event.h"

/* A header from a string literal (the literal may contain NULs). */
#define H(n, v)                                                                                    \
    {                                                                                              \
        (n), (v), sizeof(v) - 1                                                                    \
    }

#define H_SPEC   H("ce_specversion", "1.0")
#define H_ID     H("ce_id", "evt-1")
#define H_TYPE   H("ce_type", "order.created")
#define H_SOURCE H("ce_source", "shop/checkout")
#define H_TIME   H("ce_time", "2026-11-25T04:00:00.123Z")
#define H_CT     H("content-type", "application/json")
#define DATA     "{\"customer_id\":\"c1\"}"
#define STRUCTURED(body)                                                                           \
    "{\"specversion\":\"1.0\",\"id\":\"evt-1\",\"type\":\"order.created\",\"source\":"             \
    "\"shop\"," body "}"

#endif
