/* contract_decode.c: the decoders of the contract's event data, one per type, with their field
 * readers. */
#include "contract_internal.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Field readers. path is the field's JSON path for reasons, e.g.          */
/* items[3].quantity; every reader returns 0 or a negative code.            */
/* ------------------------------------------------------------------------ */

/* Finds member name of obj. Required: absent is MISSING_FIELD and null is
 * returned as is (the type check rejects it). Optional: absent or null
 * gives *item NULL. */
static int member(const cJSON *obj, const char *name, const char *path, bool required,
                  const cJSON **item, of_event_error *err)
{
    bool dup;
    const cJSON *it = of_event_json_member(obj, name, &dup);

    *item = NULL;
    if (dup)
        return of_event_error_set(err, OF_EVENT_ERR_MALFORMED_JSON, "duplicate field \"%s\"", path);
    if (it == NULL) {
        if (required)
            return of_event_error_set(err, OF_EVENT_ERR_MISSING_FIELD, "missing field \"%s\"",
                                      path);
        return 0;
    }
    if (!required && cJSON_IsNull(it))
        return 0;
    *item = it;
    return 0;
}

static int need_string(const cJSON *item, const char *path, const char **s, of_event_error *err)
{
    if (!cJSON_IsString(item) || item->valuestring == NULL)
        return of_event_error_set(err, OF_EVENT_ERR_WRONG_TYPE,
                                  "field \"%s\" must be a string, not %s", path,
                                  of_event_json_type_name(item));
    *s = item->valuestring;
    return 0;
}

/* An integer min..max (max at most 2^53, where doubles stop being exact). */
static int need_int(const cJSON *item, const char *path, int64_t min, int64_t max, int64_t *v,
                    of_event_error *err)
{
    double d;
    if (!cJSON_IsNumber(item))
        goto bad_type;
    d = item->valuedouble;
    if (!isfinite(d) || d != floor(d))
        goto bad_type;
    if (d < (double)min || d > (double)max)
        return of_event_error_set(err, OF_EVENT_ERR_OUT_OF_RANGE,
                                  "field \"%s\" must be an integer from %lld to %lld", path,
                                  (long long)min, (long long)max);
    *v = (int64_t)d;
    return 0;
bad_type:
    return of_event_error_set(err, OF_EVENT_ERR_WRONG_TYPE,
                              "field \"%s\" must be an integer from %lld to %lld", path,
                              (long long)min, (long long)max);
}

static int read_id(const cJSON *obj, const char *name, const char *path,
                   char dst[OF_EVENT_ID_MAX + 1], of_event_error *err)
{
    const cJSON *item;
    const char *s = NULL;
    int result = member(obj, name, path, true, &item, err);
    if (result != 0)
        return result;
    result = need_string(item, path, &s, err);
    if (result != 0)
        return result;
    if (!of_event_id_valid(s))
        return of_event_error_set(err, OF_EVENT_ERR_INVALID_ID,
                                  "field \"%s\" must be 1 to %d characters of [A-Za-z0-9._:-]",
                                  path, OF_EVENT_ID_MAX);
    memcpy(dst, s, strlen(s) + 1);
    return 0;
}

static int read_uuid(const cJSON *obj, const char *name, char dst[OF_UUID_STRLEN + 1],
                     of_event_error *err)
{
    const cJSON *item;
    const char *s = NULL;
    int result = member(obj, name, name, true, &item, err);
    if (result != 0)
        return result;
    result = need_string(item, name, &s, err);
    if (result != 0)
        return result;
    if (!of_uuid_valid(s))
        return of_event_error_set(err, OF_EVENT_ERR_INVALID_ID,
                                  "field \"%s\" must be a UUID (8-4-4-4-12 hex digits)", name);
    for (size_t i = 0; i <= OF_UUID_STRLEN; i++)
        dst[i] = (char)tolower((unsigned char)s[i]);
    return 0;
}

/* Optional free-text reason: valid UTF-8, at most OF_REASON_MAX characters. */
static int read_reason(const cJSON *obj, bool *has, char dst[OF_REASON_BUFSIZE],
                       of_event_error *err)
{
    const cJSON *item;
    const char *s = NULL;
    size_t len, chars = 0;
    int result = member(obj, "reason", "reason", false, &item, err);

    *has = false;
    dst[0] = '\0';
    if (result != 0 || item == NULL)
        return result;
    result = need_string(item, "reason", &s, err);
    if (result != 0)
        return result;
    len = strnlen(s, OF_REASON_BUFSIZE);
    for (size_t i = 0; i < len; i++) {
        if (((unsigned char)s[i] & 0xc0) != 0x80)
            chars++;
    }
    if (len >= OF_REASON_BUFSIZE || chars > OF_REASON_MAX)
        return of_event_error_set(err, OF_EVENT_ERR_OUT_OF_RANGE,
                                  "field \"reason\" has more than %d characters", OF_REASON_MAX);
    if (!of_utf8_valid(s, len))
        return of_event_error_set(err, OF_EVENT_ERR_MALFORMED_JSON,
                                  "field \"reason\" is not valid UTF-8");
    memcpy(dst, s, len + 1);
    *has = true;
    return 0;
}

static int read_time(const cJSON *obj, const char *name, char dst[OF_EVENT_TIME_MAX + 1],
                     of_event_error *err)
{
    const cJSON *item;
    const char *s = NULL;
    int result = member(obj, name, name, true, &item, err);
    if (result != 0)
        return result;
    result = need_string(item, name, &s, err);
    if (result != 0)
        return result;
    if (!of_event_time_valid(s))
        return of_event_error_set(err, OF_EVENT_ERR_INVALID_TIME,
                                  "field \"%s\" is not an RFC 3339 date-time", name);
    memcpy(dst, s, strlen(s) + 1);
    return 0;
}

static int read_version(const cJSON *obj, const char *name, bool required, bool *has, int32_t *v,
                        of_event_error *err)
{
    const cJSON *item;
    int64_t n;
    int result = member(obj, name, name, required, &item, err);

    if (has != NULL)
        *has = false;
    if (result != 0 || item == NULL)
        return result;
    result = need_int(item, name, 1, OF_VERSION_MAX, &n, err);
    if (result != 0)
        return result;
    *v = (int32_t)n;
    if (has != NULL)
        *has = true;
    return 0;
}

/* Reads an order status. allow_null: null gives OF_ORDER_NONE (previous_status);
 * update_only: only the statuses of an order.status.update. */
static int read_order_status(const cJSON *obj, const char *name, bool allow_null, bool update_only,
                             of_order_status *out, of_event_error *err)
{
    const cJSON *item;
    const char *s = NULL;
    of_order_status st;
    int result = member(obj, name, name, true, &item, err);
    if (result != 0)
        return result;
    if (allow_null && cJSON_IsNull(item)) {
        *out = OF_ORDER_NONE;
        return 0;
    }
    result = need_string(item, name, &s, err);
    if (result != 0)
        return result;
    if (update_only) {
        if (of_order_status_parse(s, &st) != 0 || !of_order_status_is_update(st))
            return of_event_error_set(err, OF_EVENT_ERR_INVALID_STATUS,
                                      "field \"%s\" must be one of " UPDATE_STATUS_LIST, name);
    } else if (of_order_status_parse(s, &st) != 0) {
        return of_event_error_set(err, OF_EVENT_ERR_INVALID_STATUS,
                                  "field \"%s\" must be %san order status: " ORDER_STATUS_LIST,
                                  name, allow_null ? "null or " : "");
    }
    *out = st;
    return 0;
}

static int read_return_status(const cJSON *obj, const char *name, bool allow_null,
                              of_return_status *out, of_event_error *err)
{
    const cJSON *item;
    const char *s = NULL;
    of_return_status st;
    int result = member(obj, name, name, true, &item, err);
    if (result != 0)
        return result;
    if (allow_null && cJSON_IsNull(item)) {
        *out = OF_RETURN_NONE;
        return 0;
    }
    result = need_string(item, name, &s, err);
    if (result != 0)
        return result;
    if (of_return_status_parse(s, &st) != 0)
        return of_event_error_set(err, OF_EVENT_ERR_INVALID_STATUS,
                                  "field \"%s\" must be %sa return status: " RETURN_STATUS_LIST,
                                  name, allow_null ? "null or " : "");
    *out = st;
    return 0;
}

/* Reads "items" into items[0..*n), merging lines of the same product. */
static int read_items(const cJSON *obj, of_item items[OF_ITEMS_MAX], size_t *n, of_event_error *err)
{
    const cJSON *arr, *line;
    size_t count = 0, index = 0;
    char path[64];
    int result = member(obj, "items", "items", true, &arr, err);

    *n = 0;
    if (result != 0)
        return result;
    if (!cJSON_IsArray(arr))
        return of_event_error_set(err, OF_EVENT_ERR_WRONG_TYPE,
                                  "field \"items\" must be an array, not %s",
                                  of_event_json_type_name(arr));
    cJSON_ArrayForEach(line, arr)
    {
        if (++count > OF_ITEMS_MAX)
            return of_event_error_set(err, OF_EVENT_ERR_TOO_MANY_ITEMS,
                                      "field \"items\" has more than %d entries", OF_ITEMS_MAX);
    }
    if (count == 0)
        return of_event_error_set(err, OF_EVENT_ERR_OUT_OF_RANGE,
                                  "field \"items\" must have 1 to %d entries", OF_ITEMS_MAX);
    cJSON_ArrayForEach(line, arr)
    {
        char product_id[OF_EVENT_ID_MAX + 1];
        const cJSON *q;
        int64_t quantity;
        size_t k;

        if (!cJSON_IsObject(line))
            return of_event_error_set(err, OF_EVENT_ERR_WRONG_TYPE,
                                      "field \"items[%zu]\" must be an object, not %s", index,
                                      of_event_json_type_name(line));
        snprintf(path, sizeof path, "items[%zu].product_id", index);
        result = read_id(line, "product_id", path, product_id, err);
        if (result != 0)
            return result;
        snprintf(path, sizeof path, "items[%zu].quantity", index);
        result = member(line, "quantity", path, true, &q, err);
        if (result != 0)
            return result;
        result = need_int(q, path, 1, OF_QUANTITY_MAX, &quantity, err);
        if (result != 0)
            return result;
        for (k = 0; k < *n; k++) {
            if (strcmp(items[k].product_id, product_id) == 0)
                break;
        }
        if (k < *n) {
            int64_t sum = items[k].quantity + quantity;
            if (sum > OF_QUANTITY_MAX)
                return of_event_error_set(err, OF_EVENT_ERR_OUT_OF_RANGE,
                                          "field \"%s\" brings the quantity of product \"%s\" "
                                          "to %lld, more than the limit of %d",
                                          path, product_id, (long long)sum, OF_QUANTITY_MAX);
            items[k].quantity = (int32_t)sum;
        } else {
            memcpy(items[k].product_id, product_id, sizeof product_id);
            items[k].quantity = (int32_t)quantity;
            (*n)++;
        }
        index++;
    }
    return 0;
}

static int need_object(const cJSON *data, of_event_error *err)
{
    if (!cJSON_IsObject(data))
        return of_event_error_set(err, OF_EVENT_ERR_DATA_NOT_OBJECT,
                                  "data must be a JSON object, not %s",
                                  data == NULL ? "missing" : of_event_json_type_name(data));
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Decoders                                                                  */
/* ------------------------------------------------------------------------ */

int of_order_created_decode(const cJSON *data, of_order_created *out, of_event_error *err)
{
    int result;
    const cJSON *item;
    const char *s = NULL;

    result = need_object(data, err);
    if (result != 0)
        return result;
    memset(out, 0, sizeof *out);
    result = read_id(data, "customer_id", "customer_id", out->customer_id, err);
    if (result != 0)
        return result;
    result = read_items(data, out->items, &out->n_items, err);
    if (result != 0)
        return result;
    result = member(data, "currency", "currency", false, &item, err);
    if (result != 0)
        return result;
    if (item == NULL) {
        memcpy(out->currency, OF_CURRENCY_DEFAULT, sizeof out->currency);
        return 0;
    }
    result = need_string(item, "currency", &s, err);
    if (result != 0)
        return result;
    if (strlen(s) != 3 || s[0] < 'A' || s[0] > 'Z' || s[1] < 'A' || s[1] > 'Z' || s[2] < 'A' ||
        s[2] > 'Z')
        return of_event_error_set(err, OF_EVENT_ERR_OUT_OF_RANGE,
                                  "field \"currency\" must be three uppercase letters, e.g. "
                                  "\"USD\"");
    memcpy(out->currency, s, 4);
    return 0;
}

int of_order_status_update_decode(const cJSON *data, of_order_status_update *out,
                                  of_event_error *err)
{
    int result = need_object(data, err);
    if (result != 0)
        return result;
    memset(out, 0, sizeof *out);
    result = read_uuid(data, "order_id", out->order_id, err);
    if (result != 0)
        return result;
    result = read_order_status(data, "status", false, true, &out->status, err);
    if (result != 0)
        return result;
    result = read_reason(data, &out->has_reason, out->reason, err);
    if (result != 0)
        return result;
    return read_version(data, "expected_version", false, &out->has_expected_version,
                        &out->expected_version, err);
}

int of_order_deadline_expired_decode(const cJSON *data, of_order_deadline_expired *out,
                                     of_event_error *err)
{
    const char *kind = NULL;
    const cJSON *item = NULL;
    int result = need_object(data, err);
    if (result != 0)
        return result;
    memset(out, 0, sizeof *out);
    result = read_uuid(data, "order_id", out->order_id, err);
    if (result == 0)
        result = member(data, "kind", "kind", true, &item, err);
    if (result == 0)
        result = need_string(item, "kind", &kind, err);
    if (result != 0)
        return result;
    if (strcmp(kind, "PAYMENT") != 0)
        return of_event_error_set(err, OF_EVENT_ERR_OUT_OF_RANGE,
                                  "field \"kind\" must be \"PAYMENT\"");
    snprintf(out->kind, sizeof out->kind, "%s", kind);
    return read_time(data, "due_at", out->due_at, err);
}

int of_order_status_changed_decode(const cJSON *data, of_order_status_changed *out,
                                   of_event_error *err)
{
    int result = need_object(data, err);
    if (result != 0)
        return result;
    memset(out, 0, sizeof *out);
    result = read_uuid(data, "order_id", out->order_id, err);
    if (result != 0)
        return result;
    result = read_order_status(data, "status", false, false, &out->status, err);
    if (result != 0)
        return result;
    result = read_order_status(data, "previous_status", true, false, &out->previous_status, err);
    if (result != 0)
        return result;
    result = read_version(data, "version", true, NULL, &out->version, err);
    if (result != 0)
        return result;
    result = read_reason(data, &out->has_reason, out->reason, err);
    if (result != 0)
        return result;
    result = read_id(data, "correlation_id", "correlation_id", out->correlation_id, err);
    if (result != 0)
        return result;
    return read_time(data, "at", out->at, err);
}

int of_return_requested_decode(const cJSON *data, of_return_requested *out, of_event_error *err)
{
    int result = need_object(data, err);
    if (result != 0)
        return result;
    memset(out, 0, sizeof *out);
    result = read_uuid(data, "order_id", out->order_id, err);
    if (result != 0)
        return result;
    result = read_items(data, out->items, &out->n_items, err);
    if (result != 0)
        return result;
    return read_reason(data, &out->has_reason, out->reason, err);
}

int of_return_status_changed_decode(const cJSON *data, of_return_status_changed *out,
                                    of_event_error *err)
{
    const cJSON *item;
    int64_t cents;
    int result = need_object(data, err);
    if (result != 0)
        return result;
    memset(out, 0, sizeof *out);
    result = read_uuid(data, "return_id", out->return_id, err);
    if (result != 0)
        return result;
    result = read_uuid(data, "order_id", out->order_id, err);
    if (result != 0)
        return result;
    result = read_return_status(data, "status", false, &out->status, err);
    if (result != 0)
        return result;
    result = read_return_status(data, "previous_status", true, &out->previous_status, err);
    if (result != 0)
        return result;
    result = read_version(data, "version", true, NULL, &out->version, err);
    if (result != 0)
        return result;
    result = read_reason(data, &out->has_reason, out->reason, err);
    if (result != 0)
        return result;
    result = member(data, "refund_cents", "refund_cents", false, &item, err);
    if (result != 0)
        return result;
    if (item != NULL) {
        result = need_int(item, "refund_cents", 0, OF_CENTS_MAX, &cents, err);
        if (result != 0)
            return result;
        out->refund_cents = cents;
        out->has_refund_cents = true;
    }
    result = read_id(data, "correlation_id", "correlation_id", out->correlation_id, err);
    if (result != 0)
        return result;
    return read_time(data, "at", out->at, err);
}
