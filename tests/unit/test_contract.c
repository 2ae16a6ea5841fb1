/* test_contract.c: unit tests of the typed event data decoders, encoders and status names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "domain/contract.h"

#define UUID1 "0190a0b0-0000-7000-8000-000000000001"
#define UUID2 "0190a0b0-0000-7000-8000-000000000002"
#define AT    "2026-11-25T04:00:00.123Z"

/* Which decoder a case runs. */
typedef enum decoder {
    DEC_CREATED,        /* of_order_created_decode */
    DEC_UPDATE,         /* of_order_status_update_decode */
    DEC_CHANGED,        /* of_order_status_changed_decode */
    DEC_RETURN,         /* of_return_requested_decode */
    DEC_RETURN_CHANGED, /* of_return_status_changed_decode */
} decoder;

/* One decode case: JSON data, expected code and exact reason. */
typedef struct decode_case {
    decoder dec;        /* decoder to run */
    const char *json;   /* the data */
    int code;           /* expected result */
    const char *reason; /* expected reason ("" on success) */
} decode_case;

#define ITEM(p, q)     "{\"product_id\":\"" p "\",\"quantity\":" q "}"
#define CREATED(items) "{\"customer_id\":\"c1\",\"items\":[" items "]}"
#define CHANGED(rest)                                                                              \
    "{\"order_id\":\"" UUID1 "\",\"status\":\"CONFIRMED\",\"version\":3,\"correlation_id\":\"c\"," \
    "\"at\":\"" AT "\"" rest "}"
#define RCHANGED(rest)                                                                             \
    "{\"return_id\":\"" UUID2 "\",\"order_id\":\"" UUID1 "\",\"status\":\"INITIATED\","            \
    "\"version\":1,\"correlation_id\":\"c\",\"at\":\"" AT "\"" rest "}"

#define QTY_RANGE(i) "field \"items[" #i "].quantity\" must be an integer from 1 to 10000"
#define ID_RULE(f)   "field \"" f "\" must be 1 to 64 characters of [A-Za-z0-9._:-]"
#define UUID_RULE(f) "field \"" f "\" must be a UUID (8-4-4-4-12 hex digits)"
#define ORDER_STATUSES                                                                             \
    "CREATED, INVENTORY_RESERVED, CONFIRMED, REJECTED, PAID, SHIPPED, DELIVERED, CANCELLED, "      \
    "RETURNED, PARTIALLY_RETURNED"
#define RETURN_STATUSES                                                                            \
    "INITIATED, REJECTED, RETURN_PROCESSED, REFUND_INITIATED, REFUND_PROCESSED, REFUND_COMPLETED"

static const decode_case decode_cases[] = {
    /* order.created */
    {DEC_CREATED, CREATED(ITEM("p1", "1")), 0, ""},
    {DEC_CREATED,
     "{\"customer_id\":\"c1\",\"items\":[" ITEM("p1", "1") "],\"currency\":\"EUR\","
                                                           "\"unknown\":{\"deep\":[1,2]}}",
     0, ""},
    {DEC_CREATED, "[]", OF_EVENT_ERR_DATA_NOT_OBJECT, "data must be a JSON object, not an array"},
    {DEC_CREATED, "{\"items\":[" ITEM("p1", "1") "]}", OF_EVENT_ERR_MISSING_FIELD,
     "missing field \"customer_id\""},
    {DEC_CREATED, "{\"customer_id\":7,\"items\":[" ITEM("p1", "1") "]}", OF_EVENT_ERR_WRONG_TYPE,
     "field \"customer_id\" must be a string, not a number"},
    {DEC_CREATED, "{\"customer_id\":\"\",\"items\":[" ITEM("p1", "1") "]}", OF_EVENT_ERR_INVALID_ID,
     ID_RULE("customer_id")},
    {DEC_CREATED, "{\"customer_id\":\"a b\",\"items\":[" ITEM("p1", "1") "]}",
     OF_EVENT_ERR_INVALID_ID, ID_RULE("customer_id")},
    {DEC_CREATED,
     "{\"customer_id\":\"01234567890123456789012345678901234567890123456789012345678901234\","
     "\"items\":[" ITEM("p1", "1") "]}",
     OF_EVENT_ERR_INVALID_ID, ID_RULE("customer_id")},
    {DEC_CREATED, "{\"customer_id\":\"c1\",\"customer_id\":\"c2\",\"items\":[" ITEM("p1", "1") "]}",
     OF_EVENT_ERR_MALFORMED_JSON, "duplicate field \"customer_id\""},
    {DEC_CREATED, "{\"customer_id\":\"c1\"}", OF_EVENT_ERR_MISSING_FIELD,
     "missing field \"items\""},
    {DEC_CREATED, "{\"customer_id\":\"c1\",\"items\":{}}", OF_EVENT_ERR_WRONG_TYPE,
     "field \"items\" must be an array, not an object"},
    {DEC_CREATED, "{\"customer_id\":\"c1\",\"items\":null}", OF_EVENT_ERR_WRONG_TYPE,
     "field \"items\" must be an array, not null"},
    {DEC_CREATED, CREATED(""), OF_EVENT_ERR_OUT_OF_RANGE,
     "field \"items\" must have 1 to 100 entries"},
    {DEC_CREATED, CREATED(ITEM("p0", "1") "," ITEM("p1", "1") "," ITEM("p2", "1") ",7"),
     OF_EVENT_ERR_WRONG_TYPE, "field \"items[3]\" must be an object, not a number"},
    {DEC_CREATED,
     CREATED(ITEM("p0", "1") "," ITEM("p1", "1") "," ITEM("p2", "1") "," ITEM("p3", "2.5")),
     OF_EVENT_ERR_WRONG_TYPE, QTY_RANGE(3)},
    {DEC_CREATED,
     CREATED(ITEM("p0", "1") "," ITEM("p1", "1") "," ITEM("p2", "1") "," ITEM("p3", "\"3\"")),
     OF_EVENT_ERR_WRONG_TYPE, QTY_RANGE(3)},
    {DEC_CREATED,
     CREATED(ITEM("p0", "1") "," ITEM("p1", "1") "," ITEM("p2", "1") "," ITEM("p3", "1e9")),
     OF_EVENT_ERR_OUT_OF_RANGE, QTY_RANGE(3)},
    {DEC_CREATED, CREATED(ITEM("p0", "-1")), OF_EVENT_ERR_OUT_OF_RANGE, QTY_RANGE(0)},
    {DEC_CREATED, CREATED(ITEM("p0", "0")), OF_EVENT_ERR_OUT_OF_RANGE, QTY_RANGE(0)},
    {DEC_CREATED, CREATED(ITEM("p0", "10001")), OF_EVENT_ERR_OUT_OF_RANGE, QTY_RANGE(0)},
    {DEC_CREATED, CREATED(ITEM("p0", "1e400")), OF_EVENT_ERR_WRONG_TYPE, QTY_RANGE(0)},
    {DEC_CREATED, CREATED(ITEM("p0", "null")), OF_EVENT_ERR_WRONG_TYPE, QTY_RANGE(0)},
    {DEC_CREATED, CREATED(ITEM("p0", "true")), OF_EVENT_ERR_WRONG_TYPE, QTY_RANGE(0)},
    {DEC_CREATED, CREATED(ITEM("p0", "10000")), 0, ""},
    {DEC_CREATED, CREATED(ITEM("p0", "1e2")), 0, ""},
    {DEC_CREATED, CREATED(ITEM("p0", "7.0")), 0, ""},
    {DEC_CREATED, CREATED("{\"product_id\":\"p0\"}"), OF_EVENT_ERR_MISSING_FIELD,
     "missing field \"items[0].quantity\""},
    {DEC_CREATED, CREATED("{\"quantity\":1}"), OF_EVENT_ERR_MISSING_FIELD,
     "missing field \"items[0].product_id\""},
    {DEC_CREATED, CREATED(ITEM("p0", "1") "," ITEM("p 1", "1")), OF_EVENT_ERR_INVALID_ID,
     ID_RULE("items[1].product_id")},
    {DEC_CREATED, CREATED("{\"product_id\":\"p0\",\"quantity\":1,\"quantity\":2}"),
     OF_EVENT_ERR_MALFORMED_JSON, "duplicate field \"items[0].quantity\""},
    {DEC_CREATED, CREATED(ITEM("p1", "6000") "," ITEM("p2", "1") "," ITEM("p1", "5000")),
     OF_EVENT_ERR_OUT_OF_RANGE,
     "field \"items[2].quantity\" brings the quantity of product \"p1\" to 11000, more than the "
     "limit of 10000"},
    {DEC_CREATED, CREATED(ITEM("p1", "6000") "," ITEM("p1", "4000")), 0, ""},
    {DEC_CREATED, "{\"customer_id\":\"c1\",\"items\":[" ITEM("p1", "1") "],\"currency\":\"usd\"}",
     OF_EVENT_ERR_OUT_OF_RANGE, "field \"currency\" must be three uppercase letters, e.g. \"USD\""},
    {DEC_CREATED, "{\"customer_id\":\"c1\",\"items\":[" ITEM("p1", "1") "],\"currency\":\"EURO\"}",
     OF_EVENT_ERR_OUT_OF_RANGE, "field \"currency\" must be three uppercase letters, e.g. \"USD\""},
    {DEC_CREATED, "{\"customer_id\":\"c1\",\"items\":[" ITEM("p1", "1") "],\"currency\":978}",
     OF_EVENT_ERR_WRONG_TYPE, "field \"currency\" must be a string, not a number"},
    {DEC_CREATED, "{\"customer_id\":\"c1\",\"items\":[" ITEM("p1", "1") "],\"currency\":null}", 0,
     ""},
    /* order.status.update */
    {DEC_UPDATE, "{\"order_id\":\"" UUID1 "\",\"status\":\"PAID\"}", 0, ""},
    {DEC_UPDATE,
     "{\"order_id\":\"" UUID1 "\",\"status\":\"PARTIALLY_RETURNED\",\"reason\":null,"
     "\"expected_version\":null}",
     0, ""},
    {DEC_UPDATE, "{\"status\":\"PAID\"}", OF_EVENT_ERR_MISSING_FIELD, "missing field \"order_id\""},
    {DEC_UPDATE, "{\"order_id\":\"1234\",\"status\":\"PAID\"}", OF_EVENT_ERR_INVALID_ID,
     UUID_RULE("order_id")},
    {DEC_UPDATE, "{\"order_id\":\"" UUID1 "x\",\"status\":\"PAID\"}", OF_EVENT_ERR_INVALID_ID,
     UUID_RULE("order_id")},
    {DEC_UPDATE, "{\"order_id\":[],\"status\":\"PAID\"}", OF_EVENT_ERR_WRONG_TYPE,
     "field \"order_id\" must be a string, not an array"},
    {DEC_UPDATE, "{\"order_id\":\"" UUID1 "\"}", OF_EVENT_ERR_MISSING_FIELD,
     "missing field \"status\""},
    {DEC_UPDATE, "{\"order_id\":\"" UUID1 "\",\"status\":\"CONFIRMED\"}",
     OF_EVENT_ERR_INVALID_STATUS,
     "field \"status\" must be one of PAID, SHIPPED, DELIVERED, CANCELLED, RETURNED, "
     "PARTIALLY_RETURNED"},
    {DEC_UPDATE, "{\"order_id\":\"" UUID1 "\",\"status\":\"paid\"}", OF_EVENT_ERR_INVALID_STATUS,
     "field \"status\" must be one of PAID, SHIPPED, DELIVERED, CANCELLED, RETURNED, "
     "PARTIALLY_RETURNED"},
    {DEC_UPDATE, "{\"order_id\":\"" UUID1 "\",\"status\":5}", OF_EVENT_ERR_WRONG_TYPE,
     "field \"status\" must be a string, not a number"},
    {DEC_UPDATE, "{\"order_id\":\"" UUID1 "\",\"status\":\"PAID\",\"reason\":1}",
     OF_EVENT_ERR_WRONG_TYPE, "field \"reason\" must be a string, not a number"},
    {DEC_UPDATE, "{\"order_id\":\"" UUID1 "\",\"status\":\"PAID\",\"expected_version\":0}",
     OF_EVENT_ERR_OUT_OF_RANGE,
     "field \"expected_version\" must be an integer from 1 to 2147483647"},
    {DEC_UPDATE, "{\"order_id\":\"" UUID1 "\",\"status\":\"PAID\",\"expected_version\":2147483648}",
     OF_EVENT_ERR_OUT_OF_RANGE,
     "field \"expected_version\" must be an integer from 1 to 2147483647"},
    {DEC_UPDATE, "{\"order_id\":\"" UUID1 "\",\"status\":\"PAID\",\"expected_version\":1.5}",
     OF_EVENT_ERR_WRONG_TYPE, "field \"expected_version\" must be an integer from 1 to 2147483647"},
    {DEC_UPDATE, "{\"order_id\":\"" UUID1 "\",\"status\":\"PAID\",\"expected_version\":\"2\"}",
     OF_EVENT_ERR_WRONG_TYPE, "field \"expected_version\" must be an integer from 1 to 2147483647"},
    /* order.status.changed */
    {DEC_CHANGED, CHANGED(",\"previous_status\":null"), 0, ""},
    {DEC_CHANGED, CHANGED(",\"previous_status\":\"INVENTORY_RESERVED\",\"reason\":\"ok\""), 0, ""},
    {DEC_CHANGED, CHANGED(""), OF_EVENT_ERR_MISSING_FIELD, "missing field \"previous_status\""},
    {DEC_CHANGED, CHANGED(",\"previous_status\":\"NOPE\""), OF_EVENT_ERR_INVALID_STATUS,
     "field \"previous_status\" must be null or an order status: " ORDER_STATUSES},
    {DEC_CHANGED, CHANGED(",\"previous_status\":false"), OF_EVENT_ERR_WRONG_TYPE,
     "field \"previous_status\" must be a string, not a boolean"},
    {DEC_CHANGED,
     "{\"order_id\":\"" UUID1 "\",\"status\":null,\"previous_status\":null,\"version\":1,"
     "\"correlation_id\":\"c\",\"at\":\"" AT "\"}",
     OF_EVENT_ERR_WRONG_TYPE, "field \"status\" must be a string, not null"},
    {DEC_CHANGED,
     "{\"order_id\":\"" UUID1 "\",\"status\":\"LOST\",\"previous_status\":null,\"version\":1,"
     "\"correlation_id\":\"c\",\"at\":\"" AT "\"}",
     OF_EVENT_ERR_INVALID_STATUS, "field \"status\" must be an order status: " ORDER_STATUSES},
    {DEC_CHANGED,
     "{\"order_id\":\"" UUID1 "\",\"status\":\"CREATED\",\"previous_status\":null,"
     "\"correlation_id\":\"c\",\"at\":\"" AT "\"}",
     OF_EVENT_ERR_MISSING_FIELD, "missing field \"version\""},
    {DEC_CHANGED,
     "{\"order_id\":\"" UUID1 "\",\"status\":\"CREATED\",\"previous_status\":null,\"version\":1,"
     "\"correlation_id\":\"c/1\",\"at\":\"" AT "\"}",
     OF_EVENT_ERR_INVALID_ID, ID_RULE("correlation_id")},
    {DEC_CHANGED,
     "{\"order_id\":\"" UUID1 "\",\"status\":\"CREATED\",\"previous_status\":null,\"version\":1,"
     "\"correlation_id\":\"c\",\"at\":\"2026-11-25\"}",
     OF_EVENT_ERR_INVALID_TIME, "field \"at\" is not an RFC 3339 date-time"},
    {DEC_CHANGED,
     "{\"order_id\":\"" UUID1 "\",\"status\":\"CREATED\",\"previous_status\":null,\"version\":1,"
     "\"correlation_id\":\"c\"}",
     OF_EVENT_ERR_MISSING_FIELD, "missing field \"at\""},
    /* return.requested */
    {DEC_RETURN, "{\"order_id\":\"" UUID1 "\",\"items\":[" ITEM("p1", "2") "]}", 0, ""},
    {DEC_RETURN, "{\"items\":[" ITEM("p1", "2") "]}", OF_EVENT_ERR_MISSING_FIELD,
     "missing field \"order_id\""},
    {DEC_RETURN, "{\"order_id\":\"" UUID1 "\",\"items\":[" ITEM("p1", "0") "]}",
     OF_EVENT_ERR_OUT_OF_RANGE, QTY_RANGE(0)},
    {DEC_RETURN, "{\"order_id\":\"" UUID1 "\",\"items\":[" ITEM("p1", "2") "],\"reason\":[]}",
     OF_EVENT_ERR_WRONG_TYPE, "field \"reason\" must be a string, not an array"},
    /* return.status.changed */
    {DEC_RETURN_CHANGED, RCHANGED(",\"previous_status\":null"), 0, ""},
    {DEC_RETURN_CHANGED,
     RCHANGED(",\"previous_status\":\"REFUND_PROCESSED\",\"refund_cents\":999999999999999"), 0, ""},
    {DEC_RETURN_CHANGED, RCHANGED(",\"previous_status\":null,\"refund_cents\":-1"),
     OF_EVENT_ERR_OUT_OF_RANGE,
     "field \"refund_cents\" must be an integer from 0 to 999999999999999"},
    {DEC_RETURN_CHANGED, RCHANGED(",\"previous_status\":null,\"refund_cents\":1e15"),
     OF_EVENT_ERR_OUT_OF_RANGE,
     "field \"refund_cents\" must be an integer from 0 to 999999999999999"},
    {DEC_RETURN_CHANGED, RCHANGED(",\"previous_status\":null,\"refund_cents\":10.5"),
     OF_EVENT_ERR_WRONG_TYPE,
     "field \"refund_cents\" must be an integer from 0 to 999999999999999"},
    {DEC_RETURN_CHANGED, RCHANGED(",\"previous_status\":\"PAID\""), OF_EVENT_ERR_INVALID_STATUS,
     "field \"previous_status\" must be null or a return status: " RETURN_STATUSES},
    {DEC_RETURN_CHANGED,
     "{\"return_id\":\"" UUID2 "\",\"order_id\":\"" UUID1 "\",\"status\":\"PAID\","
     "\"previous_status\":null,\"version\":1,\"correlation_id\":\"c\",\"at\":\"" AT "\"}",
     OF_EVENT_ERR_INVALID_STATUS, "field \"status\" must be a return status: " RETURN_STATUSES},
    {DEC_RETURN_CHANGED,
     "{\"return_id\":\"r1\",\"order_id\":\"" UUID1 "\",\"status\":\"INITIATED\","
     "\"previous_status\":null,\"version\":1,\"correlation_id\":\"c\",\"at\":\"" AT "\"}",
     OF_EVENT_ERR_INVALID_ID, UUID_RULE("return_id")},
    {DEC_RETURN_CHANGED, RCHANGED(",\"previous_status\":null,\"version\":2"),
     OF_EVENT_ERR_MALFORMED_JSON, "duplicate field \"version\""},
};

/* Storage for any decoder's output. */
typedef union decoded {
    of_order_created created;                /* DEC_CREATED */
    of_order_status_update update;           /* DEC_UPDATE */
    of_order_status_changed changed;         /* DEC_CHANGED */
    of_return_requested ret;                 /* DEC_RETURN */
    of_return_status_changed return_changed; /* DEC_RETURN_CHANGED */
} decoded;

static int run_decoder(decoder dec, const cJSON *data, decoded *out, of_event_error *err)
{
    switch (dec) {
    case DEC_CREATED:
        return of_order_created_decode(data, &out->created, err);
    case DEC_UPDATE:
        return of_order_status_update_decode(data, &out->update, err);
    case DEC_CHANGED:
        return of_order_status_changed_decode(data, &out->changed, err);
    case DEC_RETURN:
        return of_return_requested_decode(data, &out->ret, err);
    case DEC_RETURN_CHANGED:
        return of_return_status_changed_decode(data, &out->return_changed, err);
    }
    return -100;
}

static void test_decode_table(void **state)
{
    (void)state;
    decoded *out = malloc(sizeof *out);
    assert_non_null(out);
    for (size_t i = 0; i < sizeof decode_cases / sizeof decode_cases[0]; i++) {
        const decode_case *c = &decode_cases[i];
        of_event_error err = {OF_EVENT_OK, ""};
        cJSON *data = cJSON_Parse(c->json);
        if (data == NULL)
            print_error("case %zu: test JSON does not parse: %s\n", i, c->json);
        assert_non_null(data);
        int rc = run_decoder(c->dec, data, out, &err);
        if (rc != c->code || strcmp(err.reason, c->reason) != 0)
            print_error("case %zu (%s): got %d %s \"%s\", want %d \"%s\"\n", i, c->json, rc,
                        of_event_code_name(rc), err.reason, c->code, c->reason);
        assert_int_equal(rc, c->code);
        if (rc != 0)
            assert_int_equal(err.code, c->code);
        assert_string_equal(err.reason, c->reason);
        cJSON_Delete(data);
    }
    free(out);
}

static void test_order_created_fields(void **state)
{
    (void)state;
    of_order_created oc;
    of_event_error err;
    cJSON *data = cJSON_Parse(CREATED(ITEM("p1", "2") "," ITEM("p2", "1") "," ITEM(
        "p1", "3") "," ITEM("p3", "1e1") "," ITEM("p2", "4")));
    assert_int_equal(of_order_created_decode(data, &oc, &err), 0);
    assert_string_equal(oc.customer_id, "c1");
    assert_string_equal(oc.currency, "USD");
    /* duplicate lines merged into the first, in order of first appearance */
    assert_int_equal(oc.n_items, 3);
    assert_string_equal(oc.items[0].product_id, "p1");
    assert_int_equal(oc.items[0].quantity, 5);
    assert_string_equal(oc.items[1].product_id, "p2");
    assert_int_equal(oc.items[1].quantity, 5);
    assert_string_equal(oc.items[2].product_id, "p3");
    assert_int_equal(oc.items[2].quantity, 10);
    cJSON_Delete(data);

    data = cJSON_Parse(
        "{\"customer_id\":\"c1\",\"items\":[" ITEM("p1", "1") "],\"currency\":\"EUR\"}");
    assert_int_equal(of_order_created_decode(data, &oc, &err), 0);
    assert_string_equal(oc.currency, "EUR");
    cJSON_Delete(data);
}

/* An items array of n lines; distinct products, or all the same product. */
static cJSON *items_data(const char *id_field, const char *id, int n, bool same_product)
{
    cJSON *data = cJSON_CreateObject();
    cJSON *items = cJSON_AddArrayToObject(data, "items");
    assert_non_null(cJSON_AddStringToObject(data, id_field, id));
    for (int i = 0; i < n; i++) {
        char pid[16];
        cJSON *line = cJSON_CreateObject();
        snprintf(pid, sizeof pid, "p%d", same_product ? 0 : i);
        assert_non_null(cJSON_AddStringToObject(line, "product_id", pid));
        assert_non_null(cJSON_AddNumberToObject(line, "quantity", 100));
        assert_true(cJSON_AddItemToArray(items, line));
    }
    return data;
}

static void test_items_limits(void **state)
{
    (void)state;
    of_order_created oc;
    of_return_requested rr;
    of_event_error err;

    cJSON *data = items_data("customer_id", "c1", 100, false);
    assert_int_equal(of_order_created_decode(data, &oc, &err), 0);
    assert_int_equal(oc.n_items, 100);
    assert_string_equal(oc.items[99].product_id, "p99");
    cJSON_Delete(data);

    data = items_data("customer_id", "c1", 101, false);
    assert_int_equal(of_order_created_decode(data, &oc, &err), OF_EVENT_ERR_TOO_MANY_ITEMS);
    assert_string_equal(err.reason, "field \"items\" has more than 100 entries");
    cJSON_Delete(data);

    /* 100 lines of one product: 100 x 100 = 10000 is still allowed, merged into one */
    data = items_data("order_id", UUID1, 100, true);
    assert_int_equal(of_return_requested_decode(data, &rr, &err), 0);
    assert_int_equal(rr.n_items, 1);
    assert_int_equal(rr.items[0].quantity, 10000);
    assert_string_equal(rr.order_id, UUID1);
    assert_false(rr.has_reason);
    cJSON_Delete(data);

    /* 101 lines are too many even if they would merge */
    data = items_data("order_id", UUID1, 101, true);
    assert_int_equal(of_return_requested_decode(data, &rr, &err), OF_EVENT_ERR_TOO_MANY_ITEMS);
    cJSON_Delete(data);
}

static void test_reason_limit(void **state)
{
    (void)state;
    of_order_status_update u;
    of_event_error err;
    char reason[2048];
    cJSON *data = cJSON_CreateObject();
    assert_non_null(cJSON_AddStringToObject(data, "order_id", UUID1));
    assert_non_null(cJSON_AddStringToObject(data, "status", "CANCELLED"));

    /* 256 two-byte characters: 512 bytes, accepted */
    for (int i = 0; i < 256; i++)
        memcpy(reason + 2 * i, "\xc3\xa9", 2);
    reason[512] = '\0';
    assert_non_null(cJSON_AddStringToObject(data, "reason", reason));
    assert_int_equal(of_order_status_update_decode(data, &u, &err), 0);
    assert_true(u.has_reason);
    assert_string_equal(u.reason, reason);
    assert_false(u.has_expected_version);

    /* 257 characters */
    memcpy(reason + 512, "x", 2);
    cJSON_DeleteItemFromObjectCaseSensitive(data, "reason");
    assert_non_null(cJSON_AddStringToObject(data, "reason", reason));
    assert_int_equal(of_order_status_update_decode(data, &u, &err), OF_EVENT_ERR_OUT_OF_RANGE);
    assert_string_equal(err.reason, "field \"reason\" has more than 256 characters");

    /* 1500 bytes: more than any 256-character reason */
    memset(reason, 'x', 1500);
    reason[1500] = '\0';
    cJSON_DeleteItemFromObjectCaseSensitive(data, "reason");
    assert_non_null(cJSON_AddStringToObject(data, "reason", reason));
    assert_int_equal(of_order_status_update_decode(data, &u, &err), OF_EVENT_ERR_OUT_OF_RANGE);

    /* not UTF-8 (only possible in a tree built in memory; the parser rejects it earlier) */
    cJSON_DeleteItemFromObjectCaseSensitive(data, "reason");
    assert_non_null(cJSON_AddStringToObject(data, "reason", "\xff"));
    assert_int_equal(of_order_status_update_decode(data, &u, &err), OF_EVENT_ERR_MALFORMED_JSON);
    assert_string_equal(err.reason, "field \"reason\" is not valid UTF-8");
    cJSON_Delete(data);
}

static void test_uuid_lowercased(void **state)
{
    (void)state;
    of_order_status_update u;
    of_event_error err;
    cJSON *data = cJSON_Parse("{\"order_id\":\"0190A0B0-ABCD-7000-8000-00000000000F\","
                              "\"status\":\"SHIPPED\",\"expected_version\":4}");
    assert_int_equal(of_order_status_update_decode(data, &u, &err), 0);
    assert_string_equal(u.order_id, "0190a0b0-abcd-7000-8000-00000000000f");
    assert_int_equal(u.status, OF_ORDER_SHIPPED);
    assert_true(u.has_expected_version);
    assert_int_equal(u.expected_version, 4);
    cJSON_Delete(data);
}

static void test_status_names(void **state)
{
    (void)state;
    static const char *const orders[] = {
        "CREATED", "INVENTORY_RESERVED", "CONFIRMED", "REJECTED", "PAID",
        "SHIPPED", "DELIVERED",          "CANCELLED", "RETURNED", "PARTIALLY_RETURNED",
    };
    static const char *const returns[] = {
        "INITIATED",        "REJECTED",         "RETURN_PROCESSED",
        "REFUND_INITIATED", "REFUND_PROCESSED", "REFUND_COMPLETED",
    };
    int n_update = 0;
    for (int i = 0; i < 10; i++) {
        of_order_status st = OF_ORDER_NONE;
        assert_string_equal(of_order_status_name((of_order_status)(i + 1)), orders[i]);
        assert_int_equal(of_order_status_parse(orders[i], &st), 0);
        assert_int_equal(st, i + 1);
        n_update += of_order_status_is_update(st);
    }
    assert_int_equal(n_update, 6);
    assert_true(of_order_status_is_update(OF_ORDER_PAID));
    assert_true(of_order_status_is_update(OF_ORDER_PARTIALLY_RETURNED));
    assert_false(of_order_status_is_update(OF_ORDER_CONFIRMED));
    assert_false(of_order_status_is_update(OF_ORDER_NONE));
    assert_null(of_order_status_name(OF_ORDER_NONE));
    assert_null(of_order_status_name((of_order_status)11));
    assert_null(of_order_status_name((of_order_status)-1));
    of_order_status st;
    assert_int_equal(of_order_status_parse("paid", &st), OF_EINVAL);
    assert_int_equal(of_order_status_parse("", &st), OF_EINVAL);
    assert_int_equal(of_order_status_parse(NULL, &st), OF_EINVAL);

    for (int i = 0; i < 6; i++) {
        of_return_status rs = OF_RETURN_NONE;
        assert_string_equal(of_return_status_name((of_return_status)(i + 1)), returns[i]);
        assert_int_equal(of_return_status_parse(returns[i], &rs), 0);
        assert_int_equal(rs, i + 1);
    }
    of_return_status rs;
    assert_null(of_return_status_name(OF_RETURN_NONE));
    assert_null(of_return_status_name((of_return_status)7));
    assert_int_equal(of_return_status_parse("PAID", &rs), OF_EINVAL);
}

static char *print(const cJSON *j)
{
    char *s = cJSON_PrintUnformatted(j);
    assert_non_null(s);
    return s;
}

static void test_encode_order_status_changed(void **state)
{
    (void)state;
    of_order_status_changed in, back;
    of_event_error err;
    cJSON *data;
    char *text;

    memset(&in, 0, sizeof in);
    strcpy(in.order_id, "0190A0B0-0000-7000-8000-000000000001");
    in.status = OF_ORDER_CREATED;
    in.previous_status = OF_ORDER_NONE;
    in.version = 1;
    strcpy(in.correlation_id, "evt-1");
    strcpy(in.at, AT);
    assert_int_equal(of_order_status_changed_encode(&in, &data, &err), 0);
    text = print(data);
    assert_string_equal(text, "{\"order_id\":\"" UUID1 "\",\"status\":\"CREATED\","
                              "\"previous_status\":null,\"version\":1,\"correlation_id\":\"evt-1\","
                              "\"at\":\"" AT "\"}");
    cJSON_free(text);
    assert_int_equal(of_order_status_changed_decode(data, &back, &err), 0);
    assert_string_equal(back.order_id, UUID1);
    assert_int_equal(back.previous_status, OF_ORDER_NONE);
    assert_false(back.has_reason);
    cJSON_Delete(data);

    in.status = OF_ORDER_REJECTED;
    in.previous_status = OF_ORDER_CREATED;
    in.version = 2;
    in.has_reason = true;
    strcpy(in.reason, "OUT_OF_STOCK");
    assert_int_equal(of_order_status_changed_encode(&in, &data, &err), 0);
    text = print(data);
    assert_string_equal(text, "{\"order_id\":\"" UUID1 "\",\"status\":\"REJECTED\","
                              "\"previous_status\":\"CREATED\",\"version\":2,"
                              "\"reason\":\"OUT_OF_STOCK\",\"correlation_id\":\"evt-1\","
                              "\"at\":\"" AT "\"}");
    cJSON_free(text);
    cJSON_Delete(data);

    /* what the decoder would reject is not encoded */
    in.version = 0;
    assert_int_equal(of_order_status_changed_encode(&in, &data, &err), OF_EVENT_ERR_OUT_OF_RANGE);
    assert_null(data);
    assert_string_equal(err.reason, "field \"version\" must be an integer from 1 to 2147483647");
    in.version = 2;
    in.status = (of_order_status)42;
    assert_int_equal(of_order_status_changed_encode(&in, &data, &err), OF_EVENT_ERR_INVALID_STATUS);
    assert_null(data);
    in.status = OF_ORDER_NONE;
    assert_int_equal(of_order_status_changed_encode(&in, &data, &err), OF_EVENT_ERR_INVALID_STATUS);
    in.status = OF_ORDER_PAID;
    strcpy(in.order_id, "not-a-uuid");
    assert_int_equal(of_order_status_changed_encode(&in, &data, &err), OF_EVENT_ERR_INVALID_ID);
    assert_string_equal(err.reason, UUID_RULE("order_id"));
    strcpy(in.order_id, UUID1);
    strcpy(in.at, "now");
    assert_int_equal(of_order_status_changed_encode(&in, &data, &err), OF_EVENT_ERR_INVALID_TIME);
    strcpy(in.at, AT);
    memset(in.correlation_id, 'x', sizeof in.correlation_id); /* no NUL */
    assert_int_equal(of_order_status_changed_encode(&in, &data, &err), OF_EVENT_ERR_OUT_OF_RANGE);
    assert_string_equal(err.reason,
                        "could not encode data: field \"correlation_id\" is not terminated");
}

static void test_encode_order_status_update(void **state)
{
    (void)state;
    of_order_status_update in, back;
    of_event_error err;
    cJSON *data;
    char *text;

    memset(&in, 0, sizeof in);
    strcpy(in.order_id, UUID1);
    in.status = OF_ORDER_RETURNED;
    in.has_expected_version = true;
    in.expected_version = 7;
    in.has_reason = true;
    strcpy(in.reason, "return r-1 completed");
    assert_int_equal(of_order_status_update_encode(&in, &data, &err), 0);
    text = print(data);
    assert_string_equal(text, "{\"order_id\":\"" UUID1 "\",\"status\":\"RETURNED\","
                              "\"reason\":\"return r-1 completed\",\"expected_version\":7}");
    cJSON_free(text);
    assert_int_equal(of_order_status_update_decode(data, &back, &err), 0);
    assert_int_equal(back.status, OF_ORDER_RETURNED);
    assert_int_equal(back.expected_version, 7);
    assert_string_equal(back.reason, in.reason);
    cJSON_Delete(data);

    in.status = OF_ORDER_CONFIRMED;
    assert_int_equal(of_order_status_update_encode(&in, &data, &err), OF_EVENT_ERR_INVALID_STATUS);
    assert_null(data);
}

static void test_encode_return_status_changed(void **state)
{
    (void)state;
    of_return_status_changed in, back;
    of_event_error err;
    cJSON *data;
    char *text;

    memset(&in, 0, sizeof in);
    strcpy(in.return_id, UUID2);
    strcpy(in.order_id, UUID1);
    in.status = OF_RETURN_REFUND_PROCESSED;
    in.previous_status = OF_RETURN_REFUND_INITIATED;
    in.version = 4;
    in.has_refund_cents = true;
    in.refund_cents = OF_CENTS_MAX;
    strcpy(in.correlation_id, "evt-9");
    strcpy(in.at, AT);
    assert_int_equal(of_return_status_changed_encode(&in, &data, &err), 0);
    text = print(data);
    assert_string_equal(text, "{\"return_id\":\"" UUID2 "\",\"order_id\":\"" UUID1 "\","
                              "\"status\":\"REFUND_PROCESSED\",\"previous_status\":"
                              "\"REFUND_INITIATED\",\"version\":4,\"refund_cents\":"
                              "999999999999999,\"correlation_id\":\"evt-9\",\"at\":\"" AT "\"}");
    /* the printed text decodes to the same amount */
    cJSON *reparsed = cJSON_Parse(text);
    assert_int_equal(of_return_status_changed_decode(reparsed, &back, &err), 0);
    assert_true(back.refund_cents == OF_CENTS_MAX);
    assert_int_equal(back.status, OF_RETURN_REFUND_PROCESSED);
    assert_int_equal(back.previous_status, OF_RETURN_REFUND_INITIATED);
    cJSON_Delete(reparsed);
    cJSON_free(text);
    cJSON_Delete(data);

    in.refund_cents = OF_CENTS_MAX + 1;
    assert_int_equal(of_return_status_changed_encode(&in, &data, &err), OF_EVENT_ERR_OUT_OF_RANGE);
    assert_string_equal(err.reason,
                        "field \"refund_cents\" must be an integer from 0 to 999999999999999");
    in.has_refund_cents = false;
    in.previous_status = (of_return_status)9;
    assert_int_equal(of_return_status_changed_encode(&in, &data, &err),
                     OF_EVENT_ERR_INVALID_STATUS);
}

/* Encode -> build -> parse -> decode gives back what went in. */
static void test_round_trip_through_envelope(void **state)
{
    (void)state;
    of_order_status_changed in;
    /* Sized for its type only, as workers allocate it: under ASan a decoder that
     * touched the rest of the union would fail here. */
    of_contract_data *out = malloc(of_contract_data_size(OF_TYPE_ORDER_STATUS_CHANGED));
    of_event_error err;
    of_message m = {0};
    of_event ev;
    cJSON *data;

    assert_non_null(out);
    memset(&in, 0, sizeof in);
    strcpy(in.order_id, UUID1);
    in.status = OF_ORDER_CANCELLED;
    in.previous_status = OF_ORDER_PAID;
    in.version = 6;
    in.has_reason = true;
    strcpy(in.reason, "customer changed their mind \xe2\x80\x94 \"really\"");
    strcpy(in.correlation_id, "evt-1");
    strcpy(in.at, AT);
    assert_int_equal(of_order_status_changed_encode(&in, &data, &err), 0);
    of_event_attrs attrs = {"evt-2", OF_TYPE_ORDER_STATUS_CHANGED, "orderflow/order-status", UUID1,
                            NULL};
    assert_int_equal(of_event_build(&m, OF_TOPIC_ORDER_STATUS, UUID1, &attrs, data, &err), 0);
    cJSON_Delete(data);

    of_header_view h[8];
    for (size_t i = 0; i < m.n_headers; i++)
        h[i] = (of_header_view){m.headers[i].name, m.headers[i].value, m.headers[i].len};
    of_record_view rec = {.topic = m.topic,
                          .value = m.value,
                          .value_len = m.value_len,
                          .headers = h,
                          .n_headers = m.n_headers};
    assert_int_equal(of_event_parse(&rec, &ev, &err), 0);
    assert_int_equal(of_contract_check_type(rec.topic, ev.type, &err), 0);
    assert_int_equal(of_contract_decode(&ev, out, &err), 0);
    assert_string_equal(out->type, OF_TYPE_ORDER_STATUS_CHANGED);
    const of_order_status_changed *back = &out->u.order_status_changed;
    assert_string_equal(back->order_id, in.order_id);
    assert_int_equal(back->status, in.status);
    assert_int_equal(back->previous_status, in.previous_status);
    assert_int_equal(back->version, in.version);
    assert_true(back->has_reason);
    assert_string_equal(back->reason, in.reason);
    assert_string_equal(back->correlation_id, in.correlation_id);
    assert_string_equal(back->at, in.at);
    of_event_free(&ev);
    of_message_free(&m);
    free(out);
}

/* Each type's size covers its member and no more; an unknown type gets the union. */
static void test_contract_data_size(void **state)
{
    (void)state;
    size_t head = offsetof(of_contract_data, u);
    assert_int_equal(of_contract_data_size(OF_TYPE_ORDER_CREATED), head + sizeof(of_order_created));
    assert_int_equal(of_contract_data_size(OF_TYPE_ORDER_STATUS_CHANGED),
                     head + sizeof(of_order_status_changed));
    assert_int_equal(of_contract_data_size(OF_TYPE_RETURN_REQUESTED),
                     head + sizeof(of_return_requested));
    assert_true(of_contract_data_size(OF_TYPE_ORDER_STATUS_CHANGED) < sizeof(of_contract_data));
    assert_int_equal(of_contract_data_size("order.deleted"), sizeof(of_contract_data));
    assert_int_equal(of_contract_data_size(NULL), sizeof(of_contract_data));
}

static void test_check_type(void **state)
{
    (void)state;
    of_event_error err;
    assert_int_equal(of_contract_check_type("order.created", "order.created", &err), 0);
    assert_int_equal(of_contract_check_type("order.status", "order.status.changed", &err), 0);
    assert_int_equal(of_contract_check_type("order.status", "order.status.update", &err), 0);
    assert_int_equal(of_contract_check_type("return.requested", "return.requested", &err), 0);
    assert_int_equal(of_contract_check_type("return.requested", "return.status.changed", &err), 0);
    assert_int_equal(of_contract_check_type("order.created", "order.status.update", &err),
                     OF_EVENT_ERR_UNKNOWN_TYPE);
    assert_string_equal(err.reason, "event type \"order.status.update\" is not carried by topic "
                                    "\"order.created\"");
    assert_int_equal(of_contract_check_type("order.status", "order\"created", &err),
                     OF_EVENT_ERR_UNKNOWN_TYPE);
    assert_string_equal(err.reason, "event type is not carried by this topic");
    assert_int_equal(of_contract_check_type(NULL, NULL, &err), OF_EVENT_ERR_UNKNOWN_TYPE);
}

static void test_contract_decode_dispatch(void **state)
{
    (void)state;
    of_contract_data *out = malloc(sizeof *out);
    of_event_error err;
    of_event ev;
    assert_non_null(out);

    memset(&ev, 0, sizeof ev);
    strcpy(ev.type, "return.requested");
    ev.data = cJSON_Parse("{\"order_id\":\"" UUID1 "\",\"items\":[" ITEM("p1", "1") "]}");
    assert_int_equal(of_contract_decode(&ev, out, &err), 0);
    assert_string_equal(out->type, OF_TYPE_RETURN_REQUESTED);
    assert_int_equal(out->u.return_requested.n_items, 1);

    strcpy(ev.type, "order.created");
    assert_int_equal(of_contract_decode(&ev, out, &err), OF_EVENT_ERR_MISSING_FIELD);
    assert_string_equal(err.reason, "missing field \"customer_id\"");

    strcpy(ev.type, "order.deleted");
    assert_int_equal(of_contract_decode(&ev, out, &err), OF_EVENT_ERR_UNKNOWN_TYPE);
    assert_string_equal(err.reason, "unknown event type \"order.deleted\"");
    assert_null(out->type);
    of_event_free(&ev);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_table),
        cmocka_unit_test(test_order_created_fields),
        cmocka_unit_test(test_items_limits),
        cmocka_unit_test(test_reason_limit),
        cmocka_unit_test(test_uuid_lowercased),
        cmocka_unit_test(test_status_names),
        cmocka_unit_test(test_encode_order_status_changed),
        cmocka_unit_test(test_encode_order_status_update),
        cmocka_unit_test(test_encode_return_status_changed),
        cmocka_unit_test(test_round_trip_through_envelope),
        cmocka_unit_test(test_contract_data_size),
        cmocka_unit_test(test_check_type),
        cmocka_unit_test(test_contract_decode_dispatch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
