/* cmd_dlq_redrive.c: orderctl dlq redrive: each dead letter's original record published again, one
 * transaction per record (see cmd_dlq.c). */
#include "cmd_dlq.h"

#include "orderflow/outbox.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

/* --- redrive ----------------------------------------------------------------- */

/* Loads dead letter id (locking it) into m: the original topic, key, value and headers. */
static int load_original(PGconn *conn, const char *id, of_message *m, char **ce_id, char **headers)
{
    static const char sql[] = "select topic, key, payload, headers::text, ce_id"
                              " from dead_letters where id = $1::bigint for update";
    PGresult *r = NULL;
    bool null = false;
    const char *vals[1] = {id};
    int code = orderctl_db_query(conn, sql, 1, vals, &r);

    if (code != EX_OK)
        return code;
    if (PQntuples(r) == 0) { /* deleted since it was selected */
        fprintf(stderr, "orderctl: dead letter %s not found\n", id);
        code = EX_NOINPUT;
        goto out;
    }
    m->topic = strdup(PQgetvalue(r, 0, 0));
    *headers = strdup(PQgetvalue(r, 0, 3));
    /* A record whose envelope could not be parsed has no ce_id. */
    *ce_id = PQgetisnull(r, 0, 4) ? NULL : strdup(PQgetvalue(r, 0, 4));
    if (m->topic == NULL || *headers == NULL || (*ce_id == NULL && !PQgetisnull(r, 0, 4)) ||
        dlq_bytea_col(r, 0, 1, &m->key, &m->key_len, &null) != 0 ||
        dlq_bytea_col(r, 0, 2, &m->value, &m->value_len, &null) != 0) {
        fprintf(stderr, "orderctl: could not load dead letter %s: out of memory\n", id);
        code = EX_SOFTWARE;
        goto out;
    }
    if (m->value == NULL) { /* a record without a value is republished with an empty one */
        m->value = strdup("");
        if (m->value == NULL) {
            code = EX_SOFTWARE;
            goto out;
        }
    }
    if (of_outbox_headers_parse(*headers, m) != 0) {
        fprintf(stderr, "orderctl: could not read the headers of dead letter %s\n", id);
        code = EX_SOFTWARE;
    }
out:
    PQclear(r);
    return code;
}

/* What a dry run shows of one record. */
static int dry_run_report(const dlq_settings *s, const char *id, const of_message *m,
                          const char *ce_id, const char *headers, cJSON *arr)
{
    if (s->json) {
        cJSON *o = cJSON_CreateObject();
        cJSON *h = cJSON_Parse(headers);
        if (o == NULL || h == NULL || !cJSON_AddItemToArray(arr, o)) {
            cJSON_Delete(o);
            cJSON_Delete(h);
            return -1;
        }
        cJSON_AddNumberToObject(o, "dead_letter_id", strtod(id, NULL));
        cJSON_AddStringToObject(o, "topic", m->topic);
        if (ce_id != NULL)
            cJSON_AddStringToObject(o, "ce_id", ce_id);
        else
            cJSON_AddNullToObject(o, "ce_id");
        if (dlq_add_bytes_json(o, "key", m->key, m->key_len, m->key == NULL) != 0 ||
            dlq_add_bytes_json(o, "payload", m->value, m->value_len, false) != 0 ||
            !cJSON_AddItemToObject(o, "headers", h)) {
            cJSON_Delete(h);
            return -1;
        }
        return 0;
    }
    printf("would redrive dead letter %s to %s (ce_id %s, %zu header(s), %zu byte(s))\n", id,
           m->topic, ce_id != NULL ? ce_id : "none", m->n_headers, m->value_len);
    dlq_print_bytes("  key", m->key, m->key_len, m->key == NULL);
    dlq_print_bytes("  payload", m->value, m->value_len, false);
    printf("  headers\n");
    dlq_print_headers(headers, "    ");
    return 0;
}

/* Redrives one dead letter in its own transaction; see the file comment. */
static int redrive_one(const dlq_settings *s, PGconn *conn, orderctl_producer *p, const char *id,
                       cJSON *arr)
{
    of_message m = {0};
    char *ce_id = NULL, *headers = NULL;
    char part[16], off[24];
    orderctl_delivery at = {-1, -1};
    bool in_txn = false;
    int code = orderctl_db_exec(conn, "begin");

    if (code != EX_OK)
        goto out;
    in_txn = true;
    code = load_original(conn, id, &m, &ce_id, &headers);
    if (code != EX_OK)
        goto out;
    if (s->dry_run) {
        if (dry_run_report(s, id, &m, ce_id, headers, arr) != 0)
            code = orderctl_print_json(NULL);
        goto out;
    }
    code = orderctl_produce_sync(p, &m, &at);
    if (code != EX_OK) {
        fprintf(stderr, "orderctl: dead letter %s was not redriven\n", id);
        goto out;
    }
    snprintf(part, sizeof part, "%" PRId32, at.partition);
    snprintf(off, sizeof off, "%" PRId64, at.offset);
    const char *vals[5] = {id, m.topic, part, off, s->note};
    PGresult *r = NULL;
    code = orderctl_db_query(
        conn,
        "with d as (update dead_letters set redriven_at = now(), redrive_count = redrive_count + 1"
        " where id = $1::bigint returning id)"
        " insert into redrives (dead_letter_id, topic, partition, \"offset\", note)"
        " select id, $2, $3::integer, $4::bigint, $5 from d",
        5, vals, &r);
    PQclear(r);
    if (code == EX_OK) {
        code = orderctl_db_exec(conn, "commit");
        in_txn = false; /* a failed COMMIT ends the transaction as well */
    }
    if (code != EX_OK) {
        fprintf(stderr,
                "orderctl: dead letter %s WAS republished to %s [%s] at offset %s, but the "
                "redrive could not be recorded\n",
                id, m.topic, part, off);
        goto out;
    }
    if (s->json) {
        cJSON *o = cJSON_CreateObject();
        if (o == NULL || !cJSON_AddItemToArray(arr, o)) {
            cJSON_Delete(o);
            code = orderctl_print_json(NULL);
            goto out;
        }
        cJSON_AddNumberToObject(o, "dead_letter_id", strtod(id, NULL));
        if (ce_id != NULL)
            cJSON_AddStringToObject(o, "ce_id", ce_id);
        else
            cJSON_AddNullToObject(o, "ce_id");
        cJSON_AddStringToObject(o, "topic", m.topic);
        cJSON_AddNumberToObject(o, "partition", at.partition);
        cJSON_AddNumberToObject(o, "offset", (double)at.offset);
    } else {
        printf("redrove dead letter %s (ce_id %s) to %s [%s] at offset %s\n", id,
               ce_id != NULL ? ce_id : "none", m.topic, part, off);
    }
out:
    if (in_txn && PQstatus(conn) == CONNECTION_OK) {
        PGresult *rb = PQexec(conn, "rollback");
        PQclear(rb);
    }
    free(ce_id);
    free(headers);
    of_message_free(&m);
    return code;
}

int dlq_redrive(const dlq_settings *s, PGconn *conn, int n_args, char **args)
{
    PGresult *r = NULL;
    orderctl_producer p = {0};
    cJSON *arr = NULL;
    char *list = NULL;
    int code = EX_OK;

    if ((n_args > 0) == (s->topic != NULL)) {
        fprintf(stderr, "orderctl: redrive needs dead letter IDs or --topic T (not both); see "
                        "orderctl dlq --help\n");
        return EX_USAGE;
    }
    if (n_args > 0) {
        /* "{1,2,3}": every id is checked first, so nothing is sent for a typo. */
        size_t size = 3;
        for (int i = 0; i < n_args; i++)
            size += strlen(args[i]) + 1;
        list = malloc(size);
        if (list == NULL)
            return orderctl_print_json(NULL);
        size_t len = 0;
        list[len++] = '{';
        for (int i = 0; i < n_args; i++) {
            int64_t id;
            if (dlq_parse_id(args[i], &id) != 0) {
                fprintf(stderr,
                        "orderctl: invalid dead letter id \"%s\": expected a positive integer\n",
                        args[i]);
                code = EX_DATAERR;
                goto out;
            }
            len += (size_t)snprintf(list + len, size - len, "%s%" PRId64, i ? "," : "", id);
        }
        list[len++] = '}';
        list[len] = '\0';
        const char *vals[1] = {list};
        code = orderctl_db_query(conn,
                                 "select u.id::text, d.id is not null from unnest($1::bigint[])"
                                 " with ordinality as u(id, n) left join dead_letters d"
                                 " on d.id = u.id order by u.id, u.n",
                                 1, vals, &r);
        if (code != EX_OK)
            goto out;
        for (int i = 0; i < PQntuples(r); i++) {
            if (PQgetvalue(r, i, 1)[0] != 't') {
                fprintf(stderr, "orderctl: dead letter %s not found\n", PQgetvalue(r, i, 0));
                code = EX_NOINPUT;
            }
        }
        if (code != EX_OK) {
            fprintf(stderr, "orderctl: nothing was redriven\n");
            goto out;
        }
    } else {
        char prefixed[512], limit[24];
        if (orderctl_topic(prefixed, sizeof prefixed, s->c.prefix, s->topic) != 0) {
            fprintf(stderr, "orderctl: invalid topic \"%s\": too long\n", s->topic);
            code = EX_DATAERR;
            goto out;
        }
        snprintf(limit, sizeof limit, "%lld", (long long)s->limit);
        const char *vals[3] = {s->topic, prefixed, limit};
        code =
            orderctl_db_query(conn,
                              "select id::text from dead_letters where (topic = $1 or topic = $2)"
                              " and redriven_at is null order by id limit $3::integer",
                              3, vals, &r);
        if (code != EX_OK)
            goto out;
        if (PQntuples(r) == 0 && !s->json)
            printf("no dead letters of \"%s\" left to redrive\n", s->topic);
    }
    if (s->json) {
        arr = cJSON_CreateArray();
        if (arr == NULL) {
            code = orderctl_print_json(NULL);
            goto out;
        }
    }
    if (!s->dry_run && PQntuples(r) > 0) {
        code = orderctl_producer_open(&p, s->c.bootstrap, (int)s->timeout);
        if (code != EX_OK)
            goto out;
    }
    /* In id order, so that the records of one order keep their order. Ids
     * named twice are redriven twice: the second is the harmless repeat. */
    for (int i = 0; i < PQntuples(r) && code == EX_OK; i++)
        code = redrive_one(s, conn, &p, PQgetvalue(r, i, 0), arr);
    if (s->json) {
        int pcode = orderctl_print_json(arr);
        arr = NULL;
        if (code == EX_OK)
            code = pcode;
    }
out:
    orderctl_producer_close(&p);
    cJSON_Delete(arr);
    free(list);
    PQclear(r);
    return code;
}
