/* cmd_dlq.c: orderctl dlq list, show, redrive and history: the dead letters the workers kept,
 * and their second chance.
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
 * When the broker refuses, nothing is recorded. A run that sends anything
 * is recorded first (redrive_runs, migration 0011: who, when, the
 * predicate, how many matched); `dlq history` lists the runs. Blocking
 * libpq and a blocking producer are deliberate in this CLI (orderctl.h). */
#include "cmd_dlq.h"

#include "orderflow/event.h"
#include "orderflow/outbox.h"
#include "orderflow/text.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

static const of_config_item items[] = {
    ORDERCTL_COMMON_ITEMS(dlq_settings, c),
    {"where", NULL, "where", OF_CFG_STRING, NULL,
     "list, redrive: the dead letters to pick, e.g. 'code=UNKNOWN_PRODUCT and since=2h' (P "
     "above)",
     offsetof(dlq_settings, where), 0, -1},
    {"topic", NULL, "topic", OF_CFG_STRING, NULL,
     "original topic, with or without the topic prefix: the same as --where topic=T",
     offsetof(dlq_settings, topic), 0, -1},
    {"limit", NULL, "limit", OF_CFG_INT, "100",
     "list, history: most rows, newest first; redrive --where: most dead letters per run, "
     "oldest first",
     offsetof(dlq_settings, limit), 1, 100000},
    {"dry-run", NULL, "dry-run", OF_CFG_BOOL, "false",
     "redrive: print the records that would be sent and why each is picked; send and record "
     "nothing",
     offsetof(dlq_settings, dry_run), 0, -1},
    {"again", NULL, "again", OF_CFG_BOOL, "false",
     "redrive ID...: send dead letters that were redriven before once more (else skipped)",
     offsetof(dlq_settings, again), 0, -1},
    {"rate", NULL, "rate", OF_CFG_INT, "0",
     "redrive: records per second at most (0: as fast as the broker acknowledges)",
     offsetof(dlq_settings, rate), 0, 100000},
    {"note", NULL, "note", OF_CFG_STRING, NULL, "redrive: why (kept with the run)",
     offsetof(dlq_settings, note), 0, -1},
    {"operator", "ORDERCTL_OPERATOR", "operator", OF_CFG_STRING, NULL,
     "redrive: who runs it, kept with the run (default: user@host)",
     offsetof(dlq_settings, operator_), 0, -1},
    {"timeout", "ORDERCTL_KAFKA_TIMEOUT", "timeout", OF_CFG_MS, "30s",
     "redrive: how long the broker may take to acknowledge a record",
     offsetof(dlq_settings, timeout), 1000, 600000},
    {"json", NULL, "json", OF_CFG_BOOL, "false", "print JSON", offsetof(dlq_settings, json), 0, -1},
};
#define N_ITEMS (sizeof items / sizeof items[0])

static const char summary[] =
    "       orderctl dlq list [--where P] [--limit N] [--json]\n"
    "       orderctl dlq show ID [--json]\n"
    "       orderctl dlq redrive ID... [--again] | --where P [--limit N]\n"
    "                            [--dry-run] [--rate N] [--note TEXT]\n"
    "       orderctl dlq history [--limit N] [--json]\n"
    "list: dead letters, newest first. show: every column of one; key and payload as text when\n"
    "they are UTF-8, else base64; the original headers; its redrives and what became of them.\n"
    "redrive: republishes each dead letter's ORIGINAL record (topic, key, value, headers)\n"
    "unchanged, oldest first, waits for the broker, and records the redrive and the run. The\n"
    "ce_id is unchanged, so where the event already took effect the worker's inbox drops it.\n"
    "A dead letter redriven before is not sent again (--again for IDs), so a run repeated sends\n"
    "nothing. --dry-run lists what the same run would send and why. history: the runs, newest\n"
    "first: who, when, the predicate, dead letters matched and sent. Exit 66 for an unknown ID.\n"
    "P: terms joined by \"and\": topic=T worker=W code=C reason=TEXT reason~PART type=T\n"
    "order=ID since=T until=T (RFC 3339 or 90s, 15m, 2h, 7d back) redriven=no|yes|any\n"
    "(redrive: no by default; list: any); quote values with spaces: reason~'out of stock'.";

/* clang-format off */
static const char sql_show[] =
    "select " DL_COLUMNS ", d.key, d.payload, d.headers::text as headers"
    " from dead_letters d where d.id = $1::bigint";
/* The redrive runs, newest first, with how many records each sent. */
static const char sql_history[] =
    "select r.id as run, " OF_DB_TS("r.at") " as at, r.operator, r.db_user, r.predicate,"
    " r.matched, (select count(*) from redrives x where x.run_id = r.id) as sent, r.note"
    " from redrive_runs r order by r.id desc limit $1::integer";
/* Each redrive with what became of the record it republished: an inbox row
 * of the worker at that position means it took effect; a dead letter there
 * means it failed again; neither means it is pending or was a duplicate. */
static const char sql_redrives[] =
    "select r.id, r.run_id as run, " OF_DB_TS("r.at") " as at, r.topic, r.partition,"
    " r.\"offset\", r.note,"
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

/* Adds name (text or base64) and name_encoding to obj. Returns 0 or -1. */
int dlq_add_bytes_json(cJSON *obj, const char *name, const char *bytes, size_t len, bool null)
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
    char *b = of_base64_encode((const unsigned char *)bytes, len);
    int rc = b != NULL && cJSON_AddStringToObject(obj, name, b) != NULL &&
                     cJSON_AddStringToObject(obj, enc_name, "base64") != NULL
                 ? 0
                 : -1;
    free(b);
    return rc;
}

/* Prints "label  text" or "label  (base64) ..." for some bytes. */
void dlq_print_bytes(const char *label, const char *bytes, size_t len, bool null)
{
    if (null) {
        printf("%-14s -\n", label);
    } else if (is_text(bytes, len)) {
        printf("%-14s %s\n", label, bytes);
    } else {
        char *b = of_base64_encode((const unsigned char *)bytes, len);
        printf("%-14s (base64, %zu bytes) %s\n", label, len, b != NULL ? b : "?");
        free(b);
    }
}

/* Prints the stored headers, one "name: value" line each. */
void dlq_print_headers(const char *json, const char *indent)
{
    of_message m = {0};
    if (of_outbox_headers_parse(json, &m) != OF_OK) {
        printf("%s(unreadable: %s)\n", indent, json);
        return;
    }
    /* A value that is no text in base64, as the payload; a name that is no
     * text with its bytes as \xNN. */
    for (size_t i = 0; i < m.n_headers; i++) {
        const of_header *h = &m.headers[i];
        char *name = of_text_escape(h->name, strlen(h->name), false);
        char *b64 = is_text(h->value, h->len)
                        ? NULL
                        : of_base64_encode((const unsigned char *)h->value, h->len);
        if (b64 != NULL)
            printf("%s%s: (base64) %s\n", indent, name ? name : "?", b64);
        else
            printf("%s%s: %s\n", indent, name ? name : "?", h->value);
        free(name);
        free(b64);
    }
    if (m.n_headers == 0)
        printf("%s(none)\n", indent);
    of_message_free(&m);
}

/* Parses a dead letter id. Returns 0 or -1. */
int dlq_parse_id(const char *text, int64_t *id)
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
    PGresult *r = NULL;
    dlq_where w;
    int code = dlq_where_parse(&w, s->where, s->topic, s->c.prefix, "any");

    if (code == EX_OK)
        code = dlq_where_query(conn, &w, DL_COLUMNS, s->limit, true, &r);
    if (code == EX_OK) {
        /* The table leaves "why" out: with no predicate it says little. */
        if (s->json)
            code = orderctl_print_json(of_db_rows_json(r));
        else if (PQntuples(r) == 0)
            printf("no dead letters%s%s\n", s->where != NULL ? " where " : "",
                   s->where != NULL ? w.text : "");
        else
            orderctl_print_table(stdout, r, "", 50);
    }
    PQclear(r);
    dlq_where_free(&w);
    return code;
}

/* --- history --------------------------------------------------------------- */

static int dlq_history(const dlq_settings *s, PGconn *conn)
{
    char limit[24];
    PGresult *r = NULL;
    int code;

    snprintf(limit, sizeof limit, "%lld", (long long)s->limit);
    const char *vals[1] = {limit};
    code = orderctl_db_query(conn, sql_history, 1, vals, &r);
    if (code != EX_OK)
        return code;
    if (s->json)
        code = orderctl_print_json(of_db_rows_json(r));
    else if (PQntuples(r) == 0)
        printf("no redrive runs\n");
    else
        orderctl_print_table(stdout, r, "", 80);
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

    if (dlq_parse_id(arg, &id) != 0) {
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
    if (of_db_bytea_col(r, 0, ck, &key, &key_len, &key_null) != 0 ||
        of_db_bytea_col(r, 0, cp, &payload, &payload_len, &payload_null) != 0) {
        code = orderctl_print_json(NULL);
        goto out;
    }
    if (s->json) {
        cJSON *headers = cJSON_Parse(PQgetvalue(r, 0, ch));
        cJSON *redrives = of_db_rows_json(rd);
        obj = of_db_row_json(r, 0);
        if (obj != NULL) {
            cJSON_DeleteItemFromObjectCaseSensitive(obj, "key");
            cJSON_DeleteItemFromObjectCaseSensitive(obj, "payload");
            cJSON_DeleteItemFromObjectCaseSensitive(obj, "headers");
        }
        if (obj == NULL || headers == NULL || redrives == NULL ||
            dlq_add_bytes_json(obj, "key", key, key_len, key_null) != 0 ||
            dlq_add_bytes_json(obj, "payload", payload, payload_len, payload_null) != 0 ||
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
    dlq_print_bytes("key", key, key_len, key_null);
    dlq_print_bytes("payload", payload, payload_len, payload_null);
    printf("headers\n");
    dlq_print_headers(PQgetvalue(r, 0, ch), "  ");
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
    } else if (strcmp(action, "history") == 0 && rest == 2) {
        code = orderctl_db_connect(s.c.database_url, &conn);
        if (code == EX_OK)
            code = dlq_history(&s, conn);
    } else if (strcmp(action, "redrive") == 0) {
        code = orderctl_db_connect(s.c.database_url, &conn);
        if (code == EX_OK)
            code = dlq_redrive(&s, conn, rest - 2, argv + 2);
    } else {
        fprintf(stderr, "orderctl: usage: orderctl dlq list | show ID | redrive ID... | redrive "
                        "--where P | history; see orderctl dlq --help\n");
        code = EX_USAGE;
    }
out:
    PQfinish(conn);
    of_config_free(items, N_ITEMS, &s);
    return code;
}
