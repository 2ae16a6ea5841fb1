/* cmd_dlq_redrive.c: orderctl dlq redrive: each dead letter's original record published again, one
 * transaction per record, the run recorded first (see cmd_dlq.c). */
#include "cmd_dlq.h"

#include "orderflow/outbox.h"

#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

/* --- redrive ----------------------------------------------------------------- */

/* Loads dead letter id (locking it) into m: the original topic, key, value
 * and headers; *redriven says whether it was redriven before. */
static int load_original(PGconn *conn, const char *id, of_message *m, char **ce_id, char **headers,
                         bool *redriven)
{
    static const char sql[] = "select topic, key, payload, headers::text, ce_id,"
                              " redriven_at is not null"
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
    *redriven = PQgetvalue(r, 0, 5)[0] == 't';
    /* A record whose envelope could not be parsed has no ce_id. */
    *ce_id = PQgetisnull(r, 0, 4) ? NULL : strdup(PQgetvalue(r, 0, 4));
    if (m->topic == NULL || *headers == NULL || (*ce_id == NULL && !PQgetisnull(r, 0, 4)) ||
        of_db_bytea_col(r, 0, 1, &m->key, &m->key_len, &null) != 0 ||
        of_db_bytea_col(r, 0, 2, &m->value, &m->value_len, &null) != 0) {
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
static int dry_run_report(const dlq_settings *s, const char *id, const char *why,
                          const of_message *m, const char *ce_id, const char *headers, cJSON *arr)
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
        cJSON_AddStringToObject(o, "why", why);
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
    printf("  %-12s %s\n", "why", why);
    dlq_print_bytes("  key", m->key, m->key_len, m->key == NULL);
    dlq_print_bytes("  payload", m->value, m->value_len, false);
    printf("  headers\n");
    dlq_print_headers(headers, "    ");
    return 0;
}

/* Redrives one dead letter in its own transaction; see the file comment.
 * run_id is the run's row (NULL for a dry run). A dead letter redriven since
 * it was selected (by another operator) is skipped unless again; *sent says
 * whether a record went out. */
static int redrive_one(const dlq_settings *s, PGconn *conn, orderctl_producer *p, const char *id,
                       const char *why, const char *run_id, bool again, cJSON *arr, bool *sent)
{
    of_message m = {0};
    char *ce_id = NULL, *headers = NULL;
    char part[16], off[24];
    orderctl_delivery at = {-1, -1};
    bool in_txn = false, redriven = false;
    int code = orderctl_db_exec(conn, "begin");

    *sent = false;
    if (code != EX_OK)
        goto out;
    in_txn = true;
    code = load_original(conn, id, &m, &ce_id, &headers, &redriven);
    if (code != EX_OK)
        goto out;
    if (s->dry_run) {
        if (dry_run_report(s, id, why, &m, ce_id, headers, arr) != 0)
            code = orderctl_print_json(NULL);
        goto out;
    }
    if (redriven && !again) {
        if (!s->json)
            printf("dead letter %s was redriven meanwhile (by another run); not sent again\n", id);
        goto out;
    }
    code = orderctl_produce_sync(p, &m, &at);
    if (code != EX_OK) {
        fprintf(stderr, "orderctl: dead letter %s was not redriven\n", id);
        goto out;
    }
    snprintf(part, sizeof part, "%" PRId32, at.partition);
    snprintf(off, sizeof off, "%" PRId64, at.offset);
    *sent = true;
    const char *vals[6] = {id, m.topic, part, off, s->note, run_id};
    PGresult *r = NULL;
    code = orderctl_db_query(
        conn,
        "with d as (update dead_letters set redriven_at = now(), redrive_count = redrive_count + 1"
        " where id = $1::bigint returning id)"
        " insert into redrives (dead_letter_id, topic, partition, \"offset\", note, run_id)"
        " select id, $2, $3::integer, $4::bigint, $5, $6::bigint from d",
        6, vals, &r);
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
        cJSON_AddNumberToObject(o, "run", strtod(run_id, NULL));
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

/* Who runs orderctl: --operator, else user@host. */
static void operator_name(const dlq_settings *s, char *out, size_t size)
{
    char host[256] = "";
    const char *user = getenv("USER");
    if (s->operator_ != NULL) {
        snprintf(out, size, "%s", s->operator_);
        return;
    }
    if (user == NULL || user[0] == '\0') {
        const struct passwd *pw = getpwuid(geteuid());
        user = pw != NULL ? pw->pw_name : "unknown";
    }
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "unknown");
    host[sizeof host - 1] = '\0';
    snprintf(out, size, "%s@%s", user, host);
}

/* Selects the dead letters named by ids (each id text, "why", whether it
 * was redriven before), in id order; unknown ids are printed and make
 * EX_NOINPUT (nothing is sent). predicate gets "id in (...)". */
static int select_ids(PGconn *conn, int n_args, char **args, bool again, PGresult **r,
                      char *predicate, size_t size)
{
    /* "{1,2,3}": every id is checked first, so nothing is sent for a typo. */
    size_t cap = 3, len = 0;
    int code = EX_OK;
    for (int i = 0; i < n_args; i++)
        cap += strlen(args[i]) + 1;
    char *list = malloc(cap);
    if (list == NULL)
        return orderctl_print_json(NULL);
    list[len++] = '{';
    for (int i = 0; i < n_args; i++) {
        int64_t id;
        if (dlq_parse_id(args[i], &id) != 0) {
            fprintf(stderr,
                    "orderctl: invalid dead letter id \"%s\": expected a positive integer\n",
                    args[i]);
            free(list);
            return EX_DATAERR;
        }
        len += (size_t)snprintf(list + len, cap - len, "%s%" PRId64, i ? "," : "", id);
    }
    list[len++] = '}';
    list[len] = '\0';
    snprintf(predicate, size, "id in (%.*s)%s", (int)(len - 2), list + 1, again ? " (again)" : "");
    const char *vals[1] = {list};
    /* clang-format off */
    code = orderctl_db_query(
        conn,
        "select u.id::text, 'named by id; ' || case when d.redriven_at is null then 'never redriven'"
        " else 'redriven ' || d.redrive_count || ' time(s), last ' || "
        OF_DB_TS("d.redriven_at") " end as why,"
        " d.redriven_at is not null as redriven, d.id is not null as found"
        " from (select distinct id from unnest($1::bigint[]) as u(id)) u"
        " left join dead_letters d on d.id = u.id order by u.id",
        1, vals, r);
    /* clang-format on */
    free(list);
    if (code != EX_OK)
        return code;
    for (int i = 0; i < PQntuples(*r); i++) {
        if (PQgetvalue(*r, i, 3)[0] != 't') {
            fprintf(stderr, "orderctl: dead letter %s not found\n", PQgetvalue(*r, i, 0));
            code = EX_NOINPUT;
        }
    }
    if (code != EX_OK)
        fprintf(stderr, "orderctl: nothing was redriven\n");
    return code;
}

/* Records the run (its own committed statement, before anything is sent)
 * into run_id. */
static int record_run(const dlq_settings *s, PGconn *conn, const char *predicate, int matched,
                      char run_id[24])
{
    char who[512], n[24];
    PGresult *r = NULL;
    operator_name(s, who, sizeof who);
    snprintf(n, sizeof n, "%d", matched);
    const char *vals[4] = {who, predicate, n, s->note};
    int code = orderctl_db_query(conn,
                                 "insert into redrive_runs (operator, predicate, matched, note)"
                                 " values ($1, $2, $3::integer, $4) returning id::text",
                                 4, vals, &r);
    if (code == EX_OK)
        snprintf(run_id, 24, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return code;
}

/* Waits so that at most s->rate records go out per second. */
static void pace(const dlq_settings *s, struct timespec *next)
{
    struct timespec now;
    if (s->rate <= 0)
        return;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (next->tv_sec != 0 &&
        (now.tv_sec < next->tv_sec || (now.tv_sec == next->tv_sec && now.tv_nsec < next->tv_nsec)))
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, next, NULL);
    else
        *next = now;
    int64_t step = 1000000000LL / s->rate;
    next->tv_nsec += (long)(step % 1000000000LL);
    next->tv_sec += (time_t)(step / 1000000000LL) + next->tv_nsec / 1000000000L;
    next->tv_nsec %= 1000000000L;
}

int dlq_redrive(const dlq_settings *s, PGconn *conn, int n_args, char **args)
{
    PGresult *r = NULL;
    orderctl_producer p = {0};
    cJSON *arr = NULL;
    dlq_where w;
    char predicate[sizeof w.text], run_id[24] = "";
    struct timespec next = {0, 0};
    int code = EX_OK, n_sent = 0;
    bool by_id = n_args > 0;

    memset(&w, 0, sizeof w);
    if (by_id == (s->topic != NULL || s->where != NULL)) {
        fprintf(stderr, "orderctl: redrive needs dead letter IDs or --where P (not both); see "
                        "orderctl dlq --help\n");
        return EX_USAGE;
    }
    if (by_id) {
        code = select_ids(conn, n_args, args, s->again, &r, predicate, sizeof predicate);
    } else {
        code = dlq_where_parse(&w, s->where, s->topic, s->c.prefix, "no");
        if (code == EX_OK) {
            snprintf(predicate, sizeof predicate, "%s", w.text);
            code = dlq_where_query(conn, &w, "d.id::text", s->limit, false, &r);
        }
    }
    if (code != EX_OK)
        goto out;
    int n = PQntuples(r), c_why = PQfnumber(r, "why"), c_redriven = PQfnumber(r, "redriven");
    /* Named ids redriven before are skipped unless --again. */
    int n_eligible = n;
    for (int i = 0; by_id && !s->again && i < n; i++)
        n_eligible -= PQgetvalue(r, i, c_redriven)[0] == 't';
    if (n == 0 && !s->json)
        printf("no dead letters left to redrive where %s\n", predicate);
    if (s->json) {
        arr = cJSON_CreateArray();
        if (arr == NULL) {
            code = orderctl_print_json(NULL);
            goto out;
        }
    }
    if (!s->dry_run && n_eligible > 0) {
        code = record_run(s, conn, predicate, n_eligible, run_id);
        if (code == EX_OK)
            code = orderctl_producer_open(&p, s->c.bootstrap, (int)s->timeout);
        if (code != EX_OK)
            goto out;
    }
    /* In id order, so that the records of one order keep their order. */
    for (int i = 0; i < n && code == EX_OK; i++) {
        const char *id = PQgetvalue(r, i, 0);
        bool sent = false;
        if (by_id && !s->again && PQgetvalue(r, i, c_redriven)[0] == 't') {
            if (!s->json)
                printf("dead letter %s was redriven before (%s); not sent (--again sends it once "
                       "more)\n",
                       id, PQgetvalue(r, i, c_why) + strlen("named by id; "));
            continue;
        }
        if (!s->dry_run)
            pace(s, &next);
        code = redrive_one(s, conn, &p, id, PQgetvalue(r, i, c_why), run_id, by_id && s->again, arr,
                           &sent);
        n_sent += sent;
    }
    if (s->json) {
        int pcode = orderctl_print_json(arr);
        arr = NULL;
        if (code == EX_OK)
            code = pcode;
    } else if (!s->dry_run && n_eligible > 0) {
        printf("run %s: %d of %d dead letter(s) sent\n", run_id, n_sent, n_eligible);
    }
out:
    orderctl_producer_close(&p);
    cJSON_Delete(arr);
    dlq_where_free(&w);
    PQclear(r);
    return code;
}
