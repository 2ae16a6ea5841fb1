/* main.c: orderctl, the operator CLI: dispatches to one subcommand per verb and holds the plumbing
 * they share.
 *
 * The shared plumbing (settings, blocking PostgreSQL queries, table and JSON
 * output, a blocking Kafka producer) lives here rather than in a library
 * module because only this CLI may block: see orderctl.h. */
#include "orderctl.h"

#include "orderflow/db.h"
#include "orderflow/kafka.h"
#include "orderflow/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>

/* Every subcommand, in the order --help lists them. A new verb is one line
 * here and one cmd_<name>.c. */
static const orderctl_command commands[] = {
    {"submit", orderctl_submit, "publish an order.created event (a new order)"},
    {"update", orderctl_update, "publish an order.status.update (PAID, SHIPPED, ...) for an order"},
    {"return", orderctl_return, "publish a return.requested event for items of an order"},
    {"describe", orderctl_describe, "show an order: status, items, executions, returns, refunds"},
    {"history", orderctl_history, "show an order's timeline across its executions"},
    {"executions", orderctl_executions, "list executions, filtered by machine, status and age"},
    {"dlq", orderctl_dlq, "list, show and redrive dead letters"},
    {"parked", orderctl_parked, "list the keys whose events wait (parked); release them"},
    {"outbox", orderctl_outbox, "list unpublished outbox rows; retry the ones the relay gave up"},
    {"graph", orderctl_graph, "print a machine's state diagram (Mermaid or Graphviz DOT)"},
    {"prune", orderctl_prune, "delete rows whose retention has passed (as the workers do)"},
    {"migrate", orderctl_migrate, "apply, revert, list or verify the database schema migrations"},
    {"topics", orderctl_topics, "create the contract's Kafka topics and their dead-letter topics"},
};

static void print_usage(FILE *out)
{
    fprintf(out, "usage: orderctl <command> [options]\n"
                 "       orderctl <command> --help   settings of one command\n"
                 "       orderctl --version\n"
                 "\nCommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].help);
    fprintf(out,
            "\nExit codes (sysexits.h): 0 ok, %d bad usage, %d invalid input (or a changed "
            "migration), %d unknown order or dead letter, %d PostgreSQL or Kafka unavailable, "
            "%d internal error, %d --wait ran out, %d bad configuration\n",
            EX_USAGE, EX_DATAERR, EX_NOINPUT, EX_UNAVAILABLE, EX_SOFTWARE, EX_TEMPFAIL, EX_CONFIG);
}

int main(int argc, char **argv)
{
    const char *verb = argc > 1 ? argv[1] : NULL;

    if (verb == NULL) {
        print_usage(stderr);
        return EX_USAGE;
    }
    if (strcmp(verb, "--help") == 0 || strcmp(verb, "-h") == 0 || strcmp(verb, "help") == 0) {
        print_usage(stdout);
        return EX_OK;
    }
    if (strcmp(verb, "--version") == 0) {
        printf("orderctl %s\n", ORDERFLOW_VERSION);
        return EX_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(verb, commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    }
    fprintf(stderr, "orderctl: unknown command \"%s\"; see orderctl --help\n", verb);
    return EX_USAGE;
}

/* --- settings --------------------------------------------------------------- */

bool orderctl_settings_load(const of_config_item *items, size_t n, void *target, int argc,
                            char **argv, int *argc_rest, const char *progname, const char *summary,
                            int *code)
{
    int rc = of_config_load(items, n, target, argc, argv, argc_rest, stderr);
    if (rc == OF_CONFIG_OK)
        return true;
    if (rc == OF_CONFIG_HELP) {
        of_config_print_help(stdout, progname, summary, items, n);
        *code = EX_OK;
    } else {
        /* A bad flag is a usage error here (migrate, a deploy tool, says
         * EX_CONFIG); of_config_load already named the setting. */
        fprintf(stderr, "orderctl: see %s --help\n", progname);
        *code = EX_USAGE;
    }
    of_config_free(items, n, target);
    return false;
}

int orderctl_common_apply(const orderctl_common *common)
{
    of_log_level level;
    of_log_init("orderctl");
    if (of_log_level_parse(common->log_level, &level) != 0) {
        fprintf(stderr, "orderctl: invalid log-level \"%s\": use debug, info, warn or error\n",
                common->log_level);
        return EX_USAGE;
    }
    of_log_set_level(level);
    return EX_OK;
}

int orderctl_take_repeated(int *argc, char **argv, const char *name, const char ***values,
                           size_t *n)
{
    size_t name_len = strlen(name);
    int out = 1, i = 1;

    for (; i < *argc; i++) {
        const char *arg = argv[i];
        const char *value = NULL;
        if (strcmp(arg, "--") == 0)
            break;
        if (strncmp(arg, "--", 2) != 0 || strncmp(arg + 2, name, name_len) != 0 ||
            (arg[2 + name_len] != '\0' && arg[2 + name_len] != '=')) {
            argv[out++] = argv[i];
            continue;
        }
        if (arg[2 + name_len] == '=') {
            value = arg + 3 + name_len;
        } else if (i + 1 < *argc) {
            value = argv[++i];
        } else {
            fprintf(stderr, "orderctl: option \"--%s\" needs a value\n", name);
            return EX_USAGE;
        }
        const char **grown = realloc(*values, (*n + 1) * sizeof *grown);
        if (grown == NULL) {
            fprintf(stderr, "orderctl: could not parse arguments: out of memory\n");
            return EX_SOFTWARE;
        }
        *values = grown;
        (*values)[(*n)++] = value;
    }
    /* Whatever follows "--" is kept as it is. */
    for (; i < *argc; i++)
        argv[out++] = argv[i];
    *argc = out;
    return EX_OK;
}

int orderctl_time_arg(const char *text, char out[OF_EVENT_TIME_MAX + 1])
{
    static const struct {
        const char *unit; /* suffix */
        int64_t ms;       /* its length */
    } units[] = {{"ms", 1},      {"s", 1000},     {"m", 60000},
                 {"h", 3600000}, {"d", 86400000}, {"w", 604800000}};
    struct timespec now;
    char *end = NULL;
    long long v;

    if (of_event_time_valid(text)) {
        snprintf(out, OF_EVENT_TIME_MAX + 1, "%s", text);
        return 0;
    }
    if (text[0] < '0' || text[0] > '9')
        return -1;
    errno = 0;
    v = strtoll(text, &end, 10);
    if (errno != 0 || clock_gettime(CLOCK_REALTIME, &now) != 0)
        return -1;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(end, units[i].unit) == 0) {
            int64_t now_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
            if (v > now_ms / units[i].ms)
                return -1; /* before 1970 */
            return of_event_time_format(now_ms - v * units[i].ms, out) == 0 ? 0 : -1;
        }
    }
    return -1;
}

int orderctl_topic(char *out, size_t size, const char *prefix, const char *base)
{
    int len = snprintf(out, size, "%s%s", prefix != NULL ? prefix : "", base);
    return len < 0 || (size_t)len >= size ? -1 : 0;
}

/* --- PostgreSQL ------------------------------------------------------------- */

/* Prints "orderctl: <what>: <libpq message>" with the message on one line. */
static void print_pq_error(const char *what, const char *message)
{
    char text[1024];
    size_t len;
    snprintf(text, sizeof text, "%s", message != NULL ? message : "");
    len = strlen(text);
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == ' '))
        text[--len] = '\0';
    for (size_t i = 0; i < len; i++)
        if (text[i] == '\n')
            text[i] = ' ';
    fprintf(stderr, "orderctl: %s: %s\n", what, text);
}

int orderctl_db_connect(const char *url, PGconn **out)
{
    char *secret = NULL;
    PGconn *conn = NULL;

    *out = NULL;
    if (of_db_conninfo_check(url, &secret) != OF_OK) {
        fprintf(stderr, "orderctl: invalid database-url: not a libpq connection string or URI "
                        "(libpq's message is withheld: it may quote the password)\n");
        free(secret);
        return EX_CONFIG;
    }
    /* Keywords before "dbname" are defaults the URL may override. */
    const char *const keys[] = {"connect_timeout", "fallback_application_name", "dbname", NULL};
    const char *const vals[] = {"10", "orderctl", url, NULL};
    conn = PQconnectdbParams(keys, vals, 1);
    if (conn == NULL || PQstatus(conn) != CONNECTION_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", conn != NULL ? PQerrorMessage(conn) : "out of memory");
        of_db_scrub(msg, secret);
        print_pq_error("could not connect to PostgreSQL", msg);
        PQfinish(conn);
        free(secret);
        return EX_UNAVAILABLE;
    }
    free(secret);
    PQsetNoticeProcessor(conn, of_log_pq_notice, NULL);
    *out = conn;
    return EX_OK;
}

int orderctl_db_query(PGconn *conn, const char *sql, int n, const char *const *values,
                      PGresult **out)
{
    PGresult *r = PQexecParams(conn, sql, n, NULL, values, NULL, NULL, 0);
    ExecStatusType st = r != NULL ? PQresultStatus(r) : PGRES_FATAL_ERROR;

    *out = NULL;
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
        *out = r;
        return EX_OK;
    }
    if (PQstatus(conn) != CONNECTION_OK) {
        print_pq_error("could not query PostgreSQL: connection lost", PQerrorMessage(conn));
        PQclear(r);
        return EX_UNAVAILABLE;
    }
    char what[128];
    const char *state = r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    /* A missing table or column usually means a schema behind this binary. */
    snprintf(what, sizeof what, "could not run query (SQLSTATE %s%s)", state != NULL ? state : "?",
             state != NULL && (strcmp(state, "42P01") == 0 || strcmp(state, "42703") == 0)
                 ? "; is the schema current? see orderctl migrate status"
                 : "");
    print_pq_error(what, r != NULL ? PQresultErrorMessage(r) : PQerrorMessage(conn));
    PQclear(r);
    return EX_SOFTWARE;
}

int orderctl_db_exec(PGconn *conn, const char *sql)
{
    PGresult *r = NULL;
    int code = orderctl_db_query(conn, sql, 0, NULL, &r);
    PQclear(r);
    return code;
}

/* --- output ----------------------------------------------------------------- */

int orderctl_print_json(cJSON *json)
{
    char *text = json != NULL ? cJSON_Print(json) : NULL;
    cJSON_Delete(json);
    if (text == NULL) {
        fprintf(stderr, "orderctl: could not print JSON: out of memory\n");
        return EX_SOFTWARE;
    }
    printf("%s\n", text);
    free(text);
    return EX_OK;
}

/* Characters (UTF-8 sequences) in the first len bytes of s. */
static int utf8_chars(const char *s, size_t len)
{
    int chars = 0;
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            chars++;
    return chars;
}

/* How a cell is shown: "-" for NULL; text up to its first newline (which
 * would break the table) and at most max_width characters (0: no limit),
 * "..." marking a cut. Sets the bytes of text shown and whether it was cut;
 * returns the width on screen. */
static int cell_layout(const char *text, int max_width, size_t *show, bool *cut)
{
    const char *nl = strchr(text, '\n');
    size_t len = nl != NULL ? (size_t)(nl - text) : strlen(text);
    int chars = utf8_chars(text, len);

    *show = len;
    *cut = nl != NULL;
    if (max_width > 3 && chars > max_width) {
        /* Keep max_width - 3 characters, never splitting a UTF-8 sequence. */
        int kept = 0;
        size_t i = 0;
        for (; i < len; i++) {
            if (((unsigned char)text[i] & 0xC0) != 0x80) {
                if (kept == max_width - 3)
                    break;
                kept++;
            }
        }
        *show = i;
        *cut = true;
        chars = kept;
    }
    return chars + (*cut ? 3 : 0);
}

static const char *cell_text(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? "-" : PQgetvalue(r, row, col);
}

void orderctl_print_table(FILE *out, const PGresult *r, const char *indent, int max_width)
{
    int cols = PQnfields(r), rows = PQntuples(r);
    int *width = calloc((size_t)(cols > 0 ? cols : 1), sizeof *width);
    size_t show;
    bool cut;

    if (width == NULL)
        return;
    for (int c = 0; c < cols; c++) {
        width[c] = cell_layout(PQfname(r, c), 0, &show, &cut);
        for (int i = 0; i < rows; i++) {
            int w = cell_layout(cell_text(r, i, c), max_width, &show, &cut);
            if (w > width[c])
                width[c] = w;
        }
    }
    for (int i = -1; i < rows; i++) {
        fputs(indent, out);
        for (int c = 0; c < cols; c++) {
            const char *text = i < 0 ? PQfname(r, c) : cell_text(r, i, c);
            int w = cell_layout(text, i < 0 ? 0 : max_width, &show, &cut);
            fwrite(text, 1, show, out);
            if (cut)
                fputs("...", out);
            if (c < cols - 1)
                fprintf(out, "%*s", width[c] - w + 2, "");
        }
        fputc('\n', out);
    }
    free(width);
}

/* --- Kafka ------------------------------------------------------------------ */

/* librdkafka's own log lines (connection refused, retries) are noise in a
 * CLI whose final message says what failed; they show from log-level warn. */
static void producer_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    if (of_log_get_level() <= OF_LOG_WARN)
        of_log_rdkafka_cb(rk, level, fac, buf);
}

static void producer_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    if (of_log_get_level() <= OF_LOG_WARN)
        of_log_warn("kafka %s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    orderctl_producer *p = opaque;
    p->done = true;
    p->err = m->err;
    p->last.partition = m->partition;
    p->last.offset = m->offset;
}

int orderctl_producer_open(orderctl_producer *p, const char *bootstrap, int timeout_ms)
{
    char errstr[512], ms[24];
    rd_kafka_conf_t *conf;

    memset(p, 0, sizeof *p);
    p->timeout_ms = timeout_ms;
    conf = of_kafka_conf_new(bootstrap, "orderctl", errstr, sizeof errstr);
    if (conf == NULL) {
        fprintf(stderr, "orderctl: could not configure the Kafka producer: %s\n", errstr);
        return EX_CONFIG;
    }
    snprintf(ms, sizeof ms, "%d", timeout_ms);
    if (rd_kafka_conf_set(conf, "enable.idempotence", "true", errstr, sizeof errstr) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "acks", "all", errstr, sizeof errstr) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "linger.ms", "0", errstr, sizeof errstr) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "message.timeout.ms", ms, errstr, sizeof errstr) !=
            RD_KAFKA_CONF_OK) {
        fprintf(stderr, "orderctl: could not configure the Kafka producer: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return EX_CONFIG;
    }
    rd_kafka_conf_set_log_cb(conf, producer_log);
    rd_kafka_conf_set_error_cb(conf, producer_error);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, p);
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (p->rk == NULL) {
        fprintf(stderr, "orderctl: could not create the Kafka producer: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return EX_CONFIG;
    }
    return EX_OK;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int orderctl_produce_sync(orderctl_producer *p, const of_message *m, orderctl_delivery *where)
{
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(m->n_headers);
    rd_kafka_resp_err_t err;
    int64_t deadline;

    if (hdrs == NULL) {
        fprintf(stderr, "orderctl: could not publish: out of memory\n");
        return EX_SOFTWARE;
    }
    for (size_t i = 0; i < m->n_headers; i++)
        rd_kafka_header_add(hdrs, m->headers[i].name, -1, m->headers[i].value,
                            (ssize_t)m->headers[i].len);
    size_t key_len = m->key != NULL ? m->key_len : 0;
    p->done = false;
    p->err = RD_KAFKA_RESP_ERR_NO_ERROR;
    err = rd_kafka_producev(p->rk, RD_KAFKA_V_TOPIC(m->topic), RD_KAFKA_V_KEY(m->key, key_len),
                            RD_KAFKA_V_VALUE(m->value, m->value_len),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs),
                            RD_KAFKA_V_END);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_headers_destroy(hdrs); /* not taken over on failure */
        fprintf(stderr, "orderctl: could not publish to \"%s\": %s\n", m->topic,
                rd_kafka_err2str(err));
        return EX_UNAVAILABLE;
    }
    /* librdkafka fails the record itself after message.timeout.ms; the
     * margin only guards against a report that never comes. */
    deadline = now_ms() + p->timeout_ms + 5000;
    while (!p->done && now_ms() < deadline)
        rd_kafka_poll(p->rk, 100);
    if (!p->done) {
        fprintf(stderr, "orderctl: could not publish to \"%s\": no delivery report\n", m->topic);
        return EX_UNAVAILABLE;
    }
    if (p->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "orderctl: could not publish to \"%s\": %s\n", m->topic,
                rd_kafka_err2str(p->err));
        return EX_UNAVAILABLE;
    }
    if (where != NULL)
        *where = p->last;
    return EX_OK;
}

void orderctl_producer_close(orderctl_producer *p)
{
    if (p->rk == NULL)
        return;
    /* Every record was waited for; purge whatever a failure left queued so
     * that destroy does not wait for it. */
    rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(p->rk, 0);
    rd_kafka_destroy(p->rk);
    p->rk = NULL;
}
