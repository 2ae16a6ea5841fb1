/* cmd_dlq_where.c: the --where predicate of orderctl dlq list and redrive.
 *
 *   --where 'code=UNKNOWN_PRODUCT and topic=order.created and since=2h'
 *
 * Terms are KEY=VALUE (or reason~TEXT), joined by "and"; a value ends at
 * the first blank unless it is quoted ('...' or "..."). Keys:
 *   topic=T        the original topic, with or without the topic prefix
 *   worker=W       the worker that dead-lettered it
 *   code=C         its error code (UNKNOWN_PRODUCT, MALFORMED_JSON, ...)
 *   reason=TEXT    its whole reason; reason~TEXT: the reason contains TEXT
 *                  (case-insensitive)
 *   type=T         its ce_type (order.status.update, ...)
 *   order=ID       the record's Kafka key: an order id (for order.created,
 *                  the ce_id of its order.created); an order id also
 *                  matches the order.created that made the order
 *   since=T, until=T  created at or after T, before T: RFC 3339 or a
 *                  duration back from now (90s, 15m, 2h, 7d)
 *   redriven=no|yes|any  redrive selects no (never redriven) by default,
 *                  list any
 * The predicate is one parameterised statement: an unnamed statement is
 * planned with its values, so each term that is unset drops out of the plan
 * and the set ones use their indexes (created_at, topic, key). */
#include "cmd_dlq.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>

/* clang-format off */
static const char sql_select[] =
    " from dead_letters d"
    " where ($1::text is null or d.topic = $1 or d.topic = $2)"
    " and ($3::text is null or d.worker = $3)"
    " and ($4::text is null or d.error_code = $4)"
    " and ($5::text is null or d.reason = $5)"
    " and ($6::text is null or d.reason ilike $6)"
    " and ($7::timestamptz is null or d.created_at >= $7::timestamptz)"
    " and ($8::timestamptz is null or d.created_at < $8::timestamptz)"
    " and ($9::text is null or d.ce_type = $9)"
    " and ($10::text is null or d.key = convert_to($10, 'UTF8')"
    "      or d.key = (select convert_to(o.source_event_id, 'UTF8') from orders o"
    "                  where o.id = $11::uuid))"
    " and ($12 = 'any' or ($12 = 'no') = (d.redriven_at is null))";
/* Why a row matched: the value of each term that is set, and its redrives. */
static const char sql_why[] =
    ", concat_ws('; ',"
    " case when $1::text is not null then 'topic ' || d.topic end,"
    " case when $3::text is not null then 'worker ' || d.worker end,"
    " case when $4::text is not null then 'code ' || d.error_code end,"
    " case when $5::text is not null or $6::text is not null"
    "      then 'reason \"' || left(d.reason, 60)"
    "           || case when length(d.reason) > 60 then '...' else '' end || '\"' end,"
    " case when $7::timestamptz is not null or $8::timestamptz is not null"
    "      then 'created ' || " OF_DB_TS("d.created_at") " end,"
    " case when $9::text is not null then 'type ' || coalesce(d.ce_type, '-') end,"
    " case when $10::text is not null then 'key of order ' || $10 end,"
    " case when d.redriven_at is null then 'never redriven'"
    "      else 'redriven ' || d.redrive_count || ' time(s), last ' || "
    OF_DB_TS("d.redriven_at") " end) as why";
/* clang-format on */

typedef enum term_key {
    K_TOPIC,
    K_WORKER,
    K_CODE,
    K_REASON,
    K_TYPE,
    K_ORDER,
    K_SINCE,
    K_UNTIL,
    K_REDRIVEN,
    N_KEYS
} term_key;

static const char *const key_names[N_KEYS] = {
    "topic", "worker", "code", "reason", "type", "order", "since", "until", "redriven",
};

void dlq_where_free(dlq_where *w)
{
    free(w->buf);
    free(w->reason_like);
    memset(w, 0, sizeof *w);
}

/* Appends "key<op>value" to the normalised text, quoted when needed. */
static void add_text(dlq_where *w, const char *key, char op, const char *value)
{
    size_t len = strlen(w->text);
    const char *q = "";
    if (value[0] == '\0' || strpbrk(value, " \t'\"") != NULL)
        q = strchr(value, '\'') != NULL ? "\"" : "'";
    snprintf(w->text + len, sizeof w->text - len, "%s%s%c%s%s%s", len > 0 ? " and " : "", key, op,
             q, value, q);
}

/* The ILIKE pattern "%text%", with the pattern characters in text escaped. */
static char *like_pattern(const char *text)
{
    size_t n = strlen(text);
    char *p = malloc(2 * n + 3), *o = p;
    if (p == NULL)
        return NULL;
    *o++ = '%';
    for (const char *c = text; *c != '\0'; c++) {
        if (*c == '%' || *c == '_' || *c == '\\')
            *o++ = '\\';
        *o++ = *c;
    }
    *o++ = '%';
    *o = '\0';
    return p;
}

/* True when s (at a term boundary) starts the word "and" followed by a space. */
static bool at_and(const char *s)
{
    return strncasecmp(s, "and", 3) == 0 && (s[3] == ' ' || s[3] == '\t');
}

static int usage(const char *what, const char *detail)
{
    fprintf(stderr, "orderctl: invalid --where: %s%s%s; see orderctl dlq --help\n", what,
            detail != NULL ? ": " : "", detail != NULL ? detail : "");
    return EX_USAGE;
}

/* Sets term key (op '=' or '~') to value. Returns EX_OK or EX_USAGE. */
static int set_term(dlq_where *w, const char *prefix, term_key k, char op, const char *value,
                    bool seen[N_KEYS])
{
    char resolved[OF_EVENT_TIME_MAX + 1];
    if (seen[k])
        return usage("a key may appear once", key_names[k]);
    seen[k] = true;
    if (op == '~' && k != K_REASON)
        return usage("only reason takes ~ (contains)", key_names[k]);
    if (value[0] == '\0')
        return usage("empty value", key_names[k]);
    switch (k) {
    case K_TOPIC:
        if (orderctl_topic(w->topic_prefixed, sizeof w->topic_prefixed, prefix, value) != 0)
            return usage("topic too long", NULL);
        w->topic = value;
        break;
    case K_WORKER:
        w->worker = value;
        break;
    case K_CODE:
        w->code = value;
        break;
    case K_REASON:
        if (op == '~') {
            w->reason_part = value;
            w->reason_like = like_pattern(value);
            if (w->reason_like == NULL)
                return EX_SOFTWARE;
        } else {
            w->reason = value;
        }
        break;
    case K_TYPE:
        w->type = value;
        break;
    case K_ORDER:
        w->order = value;
        if (of_uuid_valid(value))
            snprintf(w->order_uuid, sizeof w->order_uuid, "%s", value);
        break;
    case K_SINCE:
    case K_UNTIL:
        if (orderctl_time_arg(value, resolved) != 0)
            return usage("not an RFC 3339 time (2025-01-31T12:00:00Z) or a duration (90s, 15m, "
                         "2h, 7d)",
                         value);
        snprintf(k == K_SINCE ? w->since : w->until, sizeof w->since, "%s", resolved);
        add_text(w, key_names[k], '=', resolved);
        return EX_OK;
    case K_REDRIVEN:
        if (strcmp(value, "no") != 0 && strcmp(value, "yes") != 0 && strcmp(value, "any") != 0)
            return usage("redriven takes no, yes or any", value);
        w->redriven = value;
        break;
    case N_KEYS:
        break;
    }
    add_text(w, key_names[k], op, value);
    return EX_OK;
}

int dlq_where_parse(dlq_where *w, const char *text, const char *topic, const char *prefix,
                    const char *redriven_default)
{
    bool seen[N_KEYS] = {false};
    int code;

    memset(w, 0, sizeof *w);
    w->redriven = redriven_default;
    w->buf = strdup(text != NULL ? text : "");
    if (w->buf == NULL)
        return EX_SOFTWARE;
    char *s = w->buf;
    bool first = true;
    for (;;) {
        while (*s == ' ' || *s == '\t')
            s++;
        if (*s == '\0')
            break;
        if (!first) {
            if (!at_and(s))
                return usage("terms are joined by \"and\"", s);
            s += 3;
            while (*s == ' ' || *s == '\t')
                s++;
        }
        first = false;
        /* key */
        const char *key = s;
        while (isalpha((unsigned char)*s))
            s++;
        char op = *s;
        if (op != '=' && op != '~')
            return usage("expected KEY=VALUE or reason~TEXT", key);
        *s++ = '\0';
        term_key k = N_KEYS;
        for (int i = 0; i < N_KEYS; i++)
            if (strcmp(key, key_names[i]) == 0)
                k = (term_key)i;
        if (k == N_KEYS)
            return usage("unknown key (topic, worker, code, reason, type, order, since, until, "
                         "redriven)",
                         key);
        /* value: quoted, or up to the next blank */
        char *value = s;
        if (*s == '\'' || *s == '"') {
            char q = *s++;
            value = s;
            while (*s != '\0' && *s != q)
                s++;
            if (*s != q)
                return usage("unterminated quote", value - 1);
            *s++ = '\0';
            if (*s != '\0' && *s != ' ' && *s != '\t')
                return usage("text after a closing quote", s);
        } else {
            while (*s != '\0' && *s != ' ' && *s != '\t')
                s++;
            if (*s != '\0')
                *s++ = '\0';
        }
        code = set_term(w, prefix, k, op, value, seen);
        if (code != EX_OK)
            return code;
    }
    if (topic != NULL) {
        if (w->topic != NULL && strcmp(w->topic, topic) != 0)
            return usage("--topic and a topic= term name different topics", topic);
        if (w->topic == NULL) {
            code = set_term(w, prefix, K_TOPIC, '=', topic, seen);
            if (code != EX_OK)
                return code;
        }
    }
    if (!seen[K_REDRIVEN])
        add_text(w, "redriven", '=', w->redriven);
    return EX_OK;
}

int dlq_where_query(PGconn *conn, const dlq_where *w, const char *columns, int64_t limit,
                    bool newest_first, PGresult **out)
{
    char lim[24];
    size_t size = strlen(columns) + sizeof sql_why + sizeof sql_select + 128;
    char *sql = malloc(size);
    int code;

    if (sql == NULL) {
        fprintf(stderr, "orderctl: out of memory\n");
        return EX_SOFTWARE;
    }
    snprintf(sql, size, "select %s%s%s order by d.id %s limit $13::integer", columns, sql_why,
             sql_select, newest_first ? "desc" : "");
    snprintf(lim, sizeof lim, "%" PRId64, limit);
    const char *vals[13] = {
        w->topic,
        w->topic != NULL ? w->topic_prefixed : NULL,
        w->worker,
        w->code,
        w->reason,
        w->reason_like,
        w->since[0] != '\0' ? w->since : NULL,
        w->until[0] != '\0' ? w->until : NULL,
        w->type,
        w->order,
        w->order_uuid[0] != '\0' ? w->order_uuid : NULL,
        w->redriven,
        lim,
    };
    code = orderctl_db_query(conn, sql, 13, vals, out);
    free(sql);
    return code;
}
