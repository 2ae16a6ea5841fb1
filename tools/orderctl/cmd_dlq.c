/* cmd_dlq.c: orderctl dlq list, show and redrive: the dead letters the workers kept, and their
 * second chance.
 *
 * A worker that cannot process a record writes a dead_letters row with the
 * original topic, key, value and headers (dlq.h; headers in the outbox's JSON
 * format, outbox.h) and copies it to "<topic>.dlq". `dlq redrive`
 * republishes that ORIGINAL record, unchanged, to its original topic, so the
 * worker processes it again once the cause is fixed. Because the ce_id is
 * unchanged, a record that did take effect in the meantime (the same event
 * sent again upstream, a second redrive) is dropped by the worker's inbox:
 * redriving is always safe to repeat.
 *
 * Each redrive is one PostgreSQL transaction: lock the dead letter (FOR
 * UPDATE, so two operators cannot redrive it at once), publish and wait for
 * the delivery report, then record redriven_at, redrive_count + 1 and a
 * redrives row (migration 0004) with where the record landed, and commit.
 * When the broker refuses, nothing is recorded. Blocking libpq and a
 * blocking producer are deliberate in this CLI (orderctl.h). */
#include "orderctl.h"

#include "orderflow/event.h"
#include "orderflow/outbox.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

/* Settings of every dlq action. */
typedef struct dlq_settings {
    orderctl_common c; /* database, Kafka, topic prefix, log level */
    char *topic;       /* list: filter; redrive: every not yet redriven dead letter of it */
    int64_t limit;     /* list: rows at most; redrive --topic: dead letters per run */
    int dry_run;       /* redrive: print what would be sent, send nothing */
    char *note;        /* redrive: why, kept in the redrives row */
    int64_t timeout;   /* redrive: ms the broker may take per record */
    int json;          /* print JSON */
} dlq_settings;

static const of_config_item items[] = {
    ORDERCTL_COMMON_ITEMS(dlq_settings, c),
    {"topic", NULL, "topic", OF_CFG_STRING, NULL,
     "original topic, with or without the topic prefix (list filter; redrive selector)",
     offsetof(dlq_settings, topic), 0, -1},
    {"limit", NULL, "limit", OF_CFG_INT, "100",
     "list: most rows, newest first; redrive --topic: most dead letters per run, oldest first",
     offsetof(dlq_settings, limit), 1, 100000},
    {"dry-run", NULL, "dry-run", OF_CFG_BOOL, "false",
     "redrive: print the records that would be sent, send and record nothing",
     offsetof(dlq_settings, dry_run), 0, -1},
    {"note", NULL, "note", OF_CFG_STRING, NULL, "redrive: why (kept in the redrives table)",
     offsetof(dlq_settings, note), 0, -1},
    {"timeout", "ORDERCTL_KAFKA_TIMEOUT", "timeout", OF_CFG_MS, "30s",
     "redrive: how long the broker may take to acknowledge a record",
     offsetof(dlq_settings, timeout), 1000, 600000},
    {"json", NULL, "json", OF_CFG_BOOL, "false", "print JSON", offsetof(dlq_settings, json), 0, -1},
};
#define N_ITEMS (sizeof items / sizeof items[0])

static const char summary[] =
    "       orderctl dlq list [--topic T] [--limit N] [--json]\n"
    "       orderctl dlq show ID [--json]\n"
    "       orderctl dlq redrive ID... | --topic T [--limit N] [--dry-run] [--note TEXT]\n"
    "list: dead letters, newest first. show: every column of one; key and payload as text when\n"
    "they are UTF-8, else base64; the original headers; its redrives and what became of them.\n"
    "redrive: republishes each dead letter's ORIGINAL record (topic, key, value, headers)\n"
    "unchanged, oldest first, waits for the broker, and records the redrive. --topic picks the\n"
    "topic's dead letters never redriven yet. The ce_id is unchanged, so where the event already\n"
    "took effect the worker's inbox drops it. Exit 66 for an unknown ID (nothing is sent).";

/* clang-format off */
/* The columns list and show have in common. */
#define DL_COLUMNS                                                                                 \
    "id, " ORDERCTL_TS("created_at") " as created_at, worker, topic, partition, \"offset\","       \
    " ce_id, ce_type, error_code, reason, redrive_count,"                                          \
    " " ORDERCTL_TS("redriven_at") " as redriven_at"

static const char sql_list[] =
    "select " DL_COLUMNS " from dead_letters"
    " where ($1::text is null or topic = $1 or topic = $2) order by id desc limit $3::integer";
static const char sql_show[] =
    "select " DL_COLUMNS ", key, payload, headers::text as headers"
    " from dead_letters where id = $1::bigint";
/* Each redrive with what became of the record it republished: an inbox row
 * of the worker at that position means it took effect; a dead letter there
 * means it failed again; neither means it is pending or was a duplicate. */
static const char sql_redrives[] =
    "select r.id, " ORDERCTL_TS("r.at") " as at, r.topic, r.partition, r.\"offset\", r.note,"
    " case when exists (select 1 from inbox i where i.consumer = d.worker and i.ce_id = d.ce_id"
    "   and i.topic = r.topic and i.partition = r.partition and i.\"offset\" = r.\"offset\")"
    " then 'processed'"
    " when exists (select 1 from dead_letters d2 where d2.worker = d.worker"
    "   and d2.topic = r.topic and d2.partition = r.partition and d2.\"offset\" = r.\"offset\")"
    " then 'dead-lettered again as ' || (select min(d2.id) from dead_letters d2"
    "   where d2.worker = d.worker and d2.topic = r.topic and d2.partition = r.partition"
    "   and d2.\"offset\" = r.\"offset\")"
    " else 'no effect: pending, or a duplicate the inbox dropped' end as outcome"
    " from redrives r join dead_letters d on d.id = r.dead_letter_id"
    " where r.dead_letter_id = $1::bigint order by r.id";
/* clang-format on */

/* Bytes shown to a person: as they are when UTF-8 text without NULs. */
static bool is_text(const char *bytes, size_t len)
{
    return of_text_storable(bytes, len);
}

/* A bytea column, unescaped into a NUL-terminated heap copy (free()). Sets
 * *null for SQL NULL. Returns 0 or -1 when out of memory. */
static int bytea_col(const PGresult *r, int row, int c, char **out, size_t *len, bool *null)
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

/* Adds name (text or base64) and name_encoding to obj. Returns 0 or -1. */
static int add_bytes_json(cJSON *obj, const char *name, const char *bytes, size_t len, bool null)
{
    char enc_name[64];
    snprintf(enc_name, sizeof enc_name, "%s_encoding", name);
    if (null)
        return cJSON_AddNullToObject(obj, name) != NULL &&
                       cJSON_AddNullToObject(obj, enc_name) != NULL
                   ? 0
                   : -1;
    if (is_text(bytes, len))
        return cJSON_AddStringToObject(obj, name, bytes) != NULL &&
                       cJSON_AddStringToObject(obj, enc_name, "text") != NULL
                   ? 0
                   : -1;
    char *b = of_outbox_b64_encode((const unsigned char *)bytes, len);
    int rc = b != NULL && cJSON_AddStringToObject(obj, name, b) != NULL &&
                     cJSON_AddStringToObject(obj, enc_name, "base64") != NULL
                 ? 0
                 : -1;
    free(b);
    return rc;
}

/* Prints "label  text" or "label  (base64) ..." for some bytes. */
static void print_bytes(const char *label, const char *bytes, size_t len, bool null)
{
    if (null) {
        printf("%-14s -\n", label);
    } else if (is_text(bytes, len)) {
        printf("%-14s %s\n", label, bytes);
    } else {
        char *b = of_outbox_b64_encode((const unsigned char *)bytes, len);
        printf("%-14s (base64, %zu bytes) %s\n", label, len, b != NULL ? b : "?");
        free(b);
    }
}

/* Prints the stored headers, one "name: value" line each. */
static void print_headers(const char *json, const char *indent)
{
    cJSON *arr = cJSON_Parse(json);
    const cJSON *h;
    cJSON_ArrayForEach(h, arr)
    {
        const cJSON *k = cJSON_GetObjectItemCaseSensitive(h, "k");
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(h, "v");
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(h, "b64");
        if (!cJSON_IsString(k))
            continue;
        if (cJSON_IsString(v))
            printf("%s%s: %s\n", indent, k->valuestring, v->valuestring);
        else if (cJSON_IsString(b))
            printf("%s%s: (base64) %s\n", indent, k->valuestring, b->valuestring);
    }
    if (cJSON_GetArraySize(arr) == 0)
        printf("%s(none)\n", indent);
    cJSON_Delete(arr);
}

/* Parses a dead letter id. Returns 0 or -1. */
static int parse_id(const char *text, int64_t *id)
{
    char *end = NULL;
    long long v;
    if (!isdigit((unsigned char)text[0]))
        return -1;
    errno = 0;
    v = strtoll(text, &end, 10);
    if (errno != 0 || *end != '\0' || v < 1)
        return -1;
    *id = v;
    return 0;
}

/* --- list ------------------------------------------------------------------ */

static int dlq_list(const dlq_settings *s, PGconn *conn)
{
    char prefixed[512], limit[24];
    PGresult *r = NULL;
    int code;

    if (s->topic != NULL && orderctl_topic(prefixed, sizeof prefixed, s->c.prefix, s->topic)) {
        fprintf(stderr, "orderctl: invalid topic \"%s\": too long\n", s->topic);
        return EX_DATAERR;
    }
    snprintf(limit, sizeof limit, "%lld", (long long)s->limit);
    const char *vals[3] = {s->topic, s->topic != NULL ? prefixed : NULL, limit};
    code = orderctl_db_query(conn, sql_list, 3, vals, &r);
    if (code != EX_OK)
        return code;
    if (s->json)
        code = orderctl_print_json(orderctl_rows_json(r));
    else if (PQntuples(r) == 0)
        printf("no dead letters\n");
    else
        orderctl_print_table(stdout, r, "", 50);
    PQclear(r);
    return code;
}

/* --- show ------------------------------------------------------------------ */

static int dlq_show(const dlq_settings *s, PGconn *conn, const char *arg)
{
    PGresult *r = NULL, *rd = NULL;
    char *key = NULL, *payload = NULL;
    size_t key_len = 0, payload_len = 0;
    bool key_null = false, payload_null = false;
    cJSON *obj = NULL;
    int64_t id;
    int code;

    if (parse_id(arg, &id) != 0) {
        fprintf(stderr, "orderctl: invalid dead letter id \"%s\": expected a positive integer\n",
                arg);
        return EX_DATAERR;
    }
    const char *vals[1] = {arg};
    code = orderctl_db_query(conn, sql_show, 1, vals, &r);
    if (code != EX_OK)
        goto out;
    if (PQntuples(r) == 0) {
        fprintf(stderr, "orderctl: dead letter %" PRId64 " not found\n", id);
        code = EX_NOINPUT;
        goto out;
    }
    code = orderctl_db_query(conn, sql_redrives, 1, vals, &rd);
    if (code != EX_OK)
        goto out;
    int ck = PQfnumber(r, "key"), cp = PQfnumber(r, "payload"), ch = PQfnumber(r, "headers");
    if (bytea_col(r, 0, ck, &key, &key_len, &key_null) != 0 ||
        bytea_col(r, 0, cp, &payload, &payload_len, &payload_null) != 0) {
        code = orderctl_print_json(NULL);
        goto out;
    }
    if (s->json) {
        cJSON *headers = cJSON_Parse(PQgetvalue(r, 0, ch));
        cJSON *redrives = orderctl_rows_json(rd);
        obj = orderctl_row_json(r, 0);
        if (obj != NULL) {
            cJSON_DeleteItemFromObjectCaseSensitive(obj, "key");
            cJSON_DeleteItemFromObjectCaseSensitive(obj, "payload");
            cJSON_DeleteItemFromObjectCaseSensitive(obj, "headers");
        }
        if (obj == NULL || headers == NULL || redrives == NULL ||
            add_bytes_json(obj, "key", key, key_len, key_null) != 0 ||
            add_bytes_json(obj, "payload", payload, payload_len, payload_null) != 0 ||
            !cJSON_AddItemToObject(obj, "headers", headers)) {
            cJSON_Delete(headers);
            cJSON_Delete(redrives);
            code = orderctl_print_json(NULL);
            goto out;
        }
        headers = NULL;
        if (!cJSON_AddItemToObject(obj, "redrives", redrives)) {
            cJSON_Delete(redrives);
            code = orderctl_print_json(NULL);
            goto out;
        }
        code = orderctl_print_json(obj);
        obj = NULL;
        goto out;
    }
    printf("%-14s %s\n", "dead letter", PQgetvalue(r, 0, PQfnumber(r, "id")));
    printf("%-14s %s\n", "created", PQgetvalue(r, 0, PQfnumber(r, "created_at")));
    printf("%-14s %s\n", "worker", PQgetvalue(r, 0, PQfnumber(r, "worker")));
    printf("%-14s %s partition %s offset %s\n", "source", PQgetvalue(r, 0, PQfnumber(r, "topic")),
           PQgetvalue(r, 0, PQfnumber(r, "partition")), PQgetvalue(r, 0, PQfnumber(r, "offset")));
    for (const char *const *c = (const char *const[]){"ce_id", "ce_type", "error_code", NULL};
         *c != NULL; c++) {
        int n = PQfnumber(r, *c);
        printf("%-14s %s\n", *c, PQgetisnull(r, 0, n) ? "-" : PQgetvalue(r, 0, n));
    }
    printf("%-14s %s\n", "reason", PQgetvalue(r, 0, PQfnumber(r, "reason")));
    int cr = PQfnumber(r, "redriven_at");
    printf("%-14s %s time(s)%s%s\n", "redriven", PQgetvalue(r, 0, PQfnumber(r, "redrive_count")),
           PQgetisnull(r, 0, cr) ? "" : ", last at ",
           PQgetisnull(r, 0, cr) ? "" : PQgetvalue(r, 0, cr));
    print_bytes("key", key, key_len, key_null);
    print_bytes("payload", payload, payload_len, payload_null);
    printf("headers\n");
    print_headers(PQgetvalue(r, 0, ch), "  ");
    printf("redrives\n");
    if (PQntuples(rd) == 0)
        printf("  (none)\n");
    else
        orderctl_print_table(stdout, rd, "  ", 60);
out:
    cJSON_Delete(obj);
    free(key);
    free(payload);
    PQclear(rd);
    PQclear(r);
    return code;
}

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
        bytea_col(r, 0, 1, &m->key, &m->key_len, &null) != 0 ||
        bytea_col(r, 0, 2, &m->value, &m->value_len, &null) != 0) {
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
        if (add_bytes_json(o, "key", m->key, m->key_len, m->key == NULL) != 0 ||
            add_bytes_json(o, "payload", m->value, m->value_len, false) != 0 ||
            !cJSON_AddItemToObject(o, "headers", h)) {
            cJSON_Delete(h);
            return -1;
        }
        return 0;
    }
    printf("would redrive dead letter %s to %s (ce_id %s, %zu header(s), %zu byte(s))\n", id,
           m->topic, ce_id != NULL ? ce_id : "none", m->n_headers, m->value_len);
    print_bytes("  key", m->key, m->key_len, m->key == NULL);
    print_bytes("  payload", m->value, m->value_len, false);
    printf("  headers\n");
    print_headers(headers, "    ");
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

static int dlq_redrive(const dlq_settings *s, PGconn *conn, int n_args, char **args)
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
            if (parse_id(args[i], &id) != 0) {
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

int orderctl_dlq(int argc, char **argv)
{
    dlq_settings s;
    PGconn *conn = NULL;
    int rest = 0, code = EX_OK;
    const char *action;

    memset(&s, 0, sizeof s);
    if (!orderctl_settings_load(items, N_ITEMS, &s, argc, argv, &rest, "orderctl dlq", summary,
                                &code))
        return code;
    code = orderctl_common_apply(&s.c);
    if (code != EX_OK)
        goto out;
    action = rest >= 2 ? argv[1] : "";
    if (strcmp(action, "list") == 0 && rest == 2) {
        code = orderctl_db_connect(s.c.database_url, &conn);
        if (code == EX_OK)
            code = dlq_list(&s, conn);
    } else if (strcmp(action, "show") == 0 && rest == 3) {
        code = orderctl_db_connect(s.c.database_url, &conn);
        if (code == EX_OK)
            code = dlq_show(&s, conn, argv[2]);
    } else if (strcmp(action, "redrive") == 0) {
        code = orderctl_db_connect(s.c.database_url, &conn);
        if (code == EX_OK)
            code = dlq_redrive(&s, conn, rest - 2, argv + 2);
    } else {
        fprintf(stderr, "orderctl: usage: orderctl dlq list | show ID | redrive ID... | redrive "
                        "--topic T; see orderctl dlq --help\n");
        code = EX_USAGE;
    }
out:
    PQfinish(conn);
    of_config_free(items, N_ITEMS, &s);
    return code;
}
