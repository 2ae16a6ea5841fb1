/* db_json.c: query results as JSON (rows as objects named by their columns), and bytea columns
 * as bytes. */
#include "orderflow/db.h"

#include <stdlib.h>
#include <string.h>

/* PostgreSQL type OIDs (pg_type.dat) the JSON conversion distinguishes. */
#define OID_BOOL    16
#define OID_INT8    20
#define OID_INT2    21
#define OID_INT4    23
#define OID_OID     26
#define OID_JSON    114
#define OID_FLOAT4  700
#define OID_FLOAT8  701
#define OID_NUMERIC 1700
#define OID_JSONB   3802

cJSON *of_db_row_json(const PGresult *r, int row)
{
    cJSON *obj = cJSON_CreateObject();
    if (obj == NULL)
        return NULL;
    for (int c = 0; c < PQnfields(r); c++) {
        const char *v = PQgetvalue(r, row, c);
        cJSON *item;
        if (PQgetisnull(r, row, c)) {
            item = cJSON_CreateNull();
        } else {
            switch (PQftype(r, c)) {
            case OID_BOOL:
                item = cJSON_CreateBool(v[0] == 't');
                break;
            case OID_INT2:
            case OID_INT4:
            case OID_INT8:
            case OID_OID:
            case OID_FLOAT4:
            case OID_FLOAT8:
            case OID_NUMERIC:
                /* Cents stay below 10^15 (contract.h), well inside a double's 2^53. */
                item = cJSON_CreateNumber(strtod(v, NULL));
                break;
            case OID_JSON:
            case OID_JSONB:
                item = cJSON_Parse(v);
                break;
            default:
                item = cJSON_CreateString(v);
                break;
            }
        }
        if (item == NULL || !cJSON_AddItemToObject(obj, PQfname(r, c), item)) {
            cJSON_Delete(item);
            cJSON_Delete(obj);
            return NULL;
        }
    }
    return obj;
}

cJSON *of_db_rows_json(const PGresult *r)
{
    cJSON *arr = cJSON_CreateArray();
    if (arr == NULL)
        return NULL;
    for (int i = 0; i < PQntuples(r); i++) {
        cJSON *row = of_db_row_json(r, i);
        if (row == NULL || !cJSON_AddItemToArray(arr, row)) {
            cJSON_Delete(row);
            cJSON_Delete(arr);
            return NULL;
        }
    }
    return arr;
}

/* A bytea column, unescaped into a NUL-terminated heap copy (free()). Sets
 * *null for SQL NULL. Returns 0 or -1 when out of memory. */
int of_db_bytea_col(const PGresult *r, int row, int c, char **out, size_t *len, bool *null)
{
    size_t n = 0;
    unsigned char *raw;
    *out = NULL;
    *len = 0;
    *null = PQgetisnull(r, row, c);
    if (*null)
        return 0;
    raw = PQunescapeBytea((const unsigned char *)PQgetvalue(r, row, c), &n);
    if (raw == NULL)
        return -1;
    *out = malloc(n + 1);
    if (*out != NULL) {
        memcpy(*out, raw, n);
        (*out)[n] = '\0';
        *len = n;
    }
    PQfreemem(raw);
    return *out != NULL ? 0 : -1;
}
