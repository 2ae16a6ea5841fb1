/* event_json.c: the JSON the CloudEvents parser reads: one JSON text of untrusted bytes (valid
 * UTF-8, no \u0000, nothing after it), members read once, type names for reasons. */
#include "event_internal.h"

#include "orderflow/error.h"
#include "orderflow/text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const cJSON *of_event_json_member(const cJSON *object, const char *name, bool *duplicate)
{
    const cJSON *found = NULL;
    if (duplicate != NULL)
        *duplicate = false;
    if (!cJSON_IsObject(object) || name == NULL)
        return NULL;
    for (const cJSON *c = object->child; c != NULL; c = c->next) {
        if (c->string == NULL || strcmp(c->string, name) != 0)
            continue;
        if (found == NULL) {
            found = c;
        } else {
            if (duplicate != NULL)
                *duplicate = true;
            break;
        }
    }
    return found;
}

/* True when a JSON string in s[0..len) contains the escape \u0000. s must
 * be JSON the parser accepted, so quotes and backslashes pair up. */
static bool has_nul_escape(const char *s, size_t len)
{
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!in_string) {
            if (c == '"')
                in_string = true;
            continue;
        }
        if (c == '"') {
            in_string = false;
            continue;
        }
        if (c != '\\')
            continue;
        if (i + 5 < len && s[i + 1] == 'u' && s[i + 2] == '0' && s[i + 3] == '0' &&
            s[i + 4] == '0' && s[i + 5] == '0')
            return true;
        i++; /* skip the escaped character */
    }
    return false;
}

/* Parses value[0..len) as one JSON text into *out (caller frees); what names
 * the bytes in an error ("value"). The bytes are copied into a
 * NUL-terminated buffer first, so cJSON never reads past the record's value
 * whatever its contents. */
int ev_parse_json(const void *value, size_t len, const char *what, cJSON **out, of_event_error *err)
{
    int result = 0;
    char *copy = NULL;
    cJSON *root = NULL;
    const char *end = NULL;

    *out = NULL;
    if (value == NULL || len == 0) {
        result = of_event_error_set(err, OF_EVENT_ERR_MALFORMED_JSON, "%s is empty", what);
        goto out;
    }
    if (!of_utf8_valid(value, len)) {
        result =
            of_event_error_set(err, OF_EVENT_ERR_MALFORMED_JSON, "%s is not valid UTF-8", what);
        goto out;
    }
    copy = malloc(len + 1);
    if (copy == NULL) {
        result = of_event_error_set(err, OF_EVENT_ERR_NO_MEMORY,
                                    "could not parse %s: out of memory", what);
        goto out;
    }
    memcpy(copy, value, len);
    copy[len] = '\0';
    /* cJSON cannot tell a syntax error from a failed allocation; a value of
     * at most 64 KiB makes the latter unlikely, so both count as malformed. */
    root = cJSON_ParseWithOpts(copy, &end, 0);
    if (root == NULL) {
        /* The error pointer is global to cJSON; compare addresses as integers
         * so that a pointer into another buffer is harmless. */
        uintptr_t at = (uintptr_t)cJSON_GetErrorPtr(), base = (uintptr_t)copy;
        size_t pos = at >= base && at <= base + len ? (size_t)(at - base) : 0;
        result = of_event_error_set(err, OF_EVENT_ERR_MALFORMED_JSON,
                                    "%s is not valid JSON (near byte %zu)", what, pos + 1);
        goto out;
    }
    if (end == NULL || (uintptr_t)end < (uintptr_t)copy || (uintptr_t)end > (uintptr_t)copy + len) {
        result = of_event_error_set(err, OF_EVENT_ERR_MALFORMED_JSON, "%s is not valid JSON", what);
        goto out;
    }
    for (const char *p = end; p < copy + len; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            result = of_event_error_set(err, OF_EVENT_ERR_MALFORMED_JSON,
                                        "%s has extra bytes after the JSON text at byte %zu", what,
                                        (size_t)(p - copy) + 1);
            goto out;
        }
    }
    if (has_nul_escape(copy, (size_t)(end - copy))) {
        result = of_event_error_set(err, OF_EVENT_ERR_MALFORMED_JSON,
                                    "%s contains the escape \\u0000, which is not supported", what);
        goto out;
    }
    *out = root;
    root = NULL;
out:
    cJSON_Delete(root);
    free(copy);
    return result;
}

const char *of_event_json_type_name(const cJSON *item)
{
    if (cJSON_IsObject(item))
        return "an object";
    if (cJSON_IsArray(item))
        return "an array";
    if (cJSON_IsString(item))
        return "a string";
    if (cJSON_IsNumber(item))
        return "a number";
    if (cJSON_IsBool(item))
        return "a boolean";
    if (cJSON_IsNull(item))
        return "null";
    return "invalid";
}
