/* inbox.c: processed-event records that make redelivery harmless. */
#include "orderflow/inbox.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const of_db_stmt of_inbox_stmts[] = {
    {"of_inbox_check", "select ce_id from inbox where consumer = $1 and ce_id = any($2::text[])",
     false},
    {"of_inbox_insert_rows",
     "insert into inbox (consumer, ce_id, ce_type, topic, partition, \"offset\")"
     " select * from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::integer[],"
     " $6::bigint[])",
     true},
};
const size_t of_inbox_n_stmts = sizeof of_inbox_stmts / sizeof of_inbox_stmts[0];

int of_inbox_add_check(of_db_pipeline *p, const char *consumer, const char *const *ids, size_t n)
{
    char *array = of_db_text_array(ids, n);
    int result;
    if (array == NULL)
        return OF_ENOMEM;
    const char *values[2] = {consumer, array};
    result = of_db_pipeline_add(p, "of_inbox_check", 2, values);
    free(array);
    return result;
}

bool of_inbox_result_has(const PGresult *result, const char *id)
{
    if (result == NULL)
        return false;
    for (int i = 0; i < PQntuples(result); i++) {
        if (strcmp(PQgetvalue(result, i, 0), id) == 0)
            return true;
    }
    return false;
}

int of_inbox_rows_add(of_db_rows *r, const char *consumer, const char *ce_id, const char *ce_type,
                      const char *topic, int32_t partition, int64_t offset)
{
    char part[16], off[24];
    snprintf(part, sizeof part, "%" PRId32, partition);
    snprintf(off, sizeof off, "%" PRId64, offset);
    const char *values[6] = {consumer, ce_id, ce_type, topic, part, off};
    return of_db_rows_add(r, values);
}
