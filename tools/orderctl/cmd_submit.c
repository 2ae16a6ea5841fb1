/* cmd_submit.c: orderctl submit, update and return, which publish upstream events as an operator.
 *
 * Each command builds the event's data, checks it with the decoder the
 * consuming worker runs (so nothing is published that the worker would
 * dead-letter for its shape), builds a binary-mode CloudEvent with
 * of_event_build (ce_source "orderctl", ce_id a fresh UUID), reads that
 * record back through of_event_parse and of_contract_decode exactly as the
 * worker will, and publishes it with a blocking, idempotent producer,
 * waiting for the delivery report: a zero exit means the broker has the
 * record. With --wait the command then polls PostgreSQL until the workers
 * have processed the event and prints the outcome.
 *
 * Blocking libpq and a blocking producer are deliberate: this is a
 * short-lived CLI, not a worker on an event loop (see orderctl.h). */
#include "cmd_submit.h"

#include "domain/contract.h"
#include "orderflow/event.h"
#include "orderflow/uuid.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <time.h>

/* The settings submit, update and return share after their own. */
// clang-format off
#define PUBLISH_ITEMS_TAIL                                                                         \
    {"timeout", "ORDERCTL_KAFKA_TIMEOUT", "timeout", OF_CFG_MS, "30s",                             \
     "how long the broker may take to acknowledge the record",                                     \
     offsetof(publish_settings, timeout), 1000, 600000},                                           \
    {"wait", NULL, "wait", OF_CFG_MS, "0",                                                         \
     "then wait up to this long for the workers' outcome (0: do not wait)",                        \
     offsetof(publish_settings, wait), 0, 3600000},                                                \
    {"json", NULL, "json", OF_CFG_BOOL, "false",                                                   \
     "print a JSON object (ce_id, topic, key, partition, offset, outcome)",                        \
     offsetof(publish_settings, json), 0, -1}
// clang-format on

static const of_config_item submit_items[] = {
    ORDERCTL_COMMON_ITEMS(publish_settings, c),
    {"customer", NULL, "customer", OF_CFG_STRING, NULL, "customer id (required unless --file)",
     offsetof(publish_settings, customer), 0, -1},
    {"currency", NULL, "currency", OF_CFG_STRING, NULL,
     "three uppercase letters (default: the contract's USD)", offsetof(publish_settings, currency),
     0, -1},
    {"file", NULL, "file", OF_CFG_STRING, NULL,
     "read the event's data (a JSON object) from this file, - for stdin",
     offsetof(publish_settings, file), 0, -1},
    PUBLISH_ITEMS_TAIL,
};

static const of_config_item update_items[] = {
    ORDERCTL_COMMON_ITEMS(publish_settings, c),
    {"expected-version", NULL, "expected-version", OF_CFG_INT, NULL,
     "apply only if the order is at this version (the task token)",
     offsetof(publish_settings, expected_version), 1, INT32_MAX},
    {"reason", NULL, "reason", OF_CFG_STRING, NULL, "free-text reason, kept in the history",
     offsetof(publish_settings, reason), 0, -1},
    PUBLISH_ITEMS_TAIL,
};

static const of_config_item return_items[] = {
    ORDERCTL_COMMON_ITEMS(publish_settings, c),
    {"reason", NULL, "reason", OF_CFG_STRING, NULL, "the customer's reason for the return",
     offsetof(publish_settings, reason), 0, -1},
    PUBLISH_ITEMS_TAIL,
};

#define N_SUBMIT_ITEMS (sizeof submit_items / sizeof submit_items[0])
#define N_UPDATE_ITEMS (sizeof update_items / sizeof update_items[0])
#define N_RETURN_ITEMS (sizeof return_items / sizeof return_items[0])

static const char submit_summary[] =
    "       orderctl submit --customer ID --item PRODUCT:QTY [--item ...] [--currency EUR]\n"
    "       orderctl submit --file order.json\n"
    "Publishes order.created (key = ce_id) and prints its ce_id once the broker acknowledged it.\n"
    "The data is checked with the order-created worker's decoder first (exit 65 if invalid).\n"
    "--item may repeat; PRODUCT:QTY splits at the last ':'. With --wait, then waits until\n"
    "OrderProcess has stopped and prints \"order <id> <STATUS> [reason]\": exit 0 for\n"
    "CONFIRMED, 65 for REJECTED or a dead letter, 75 when the wait ran out.";

static const char update_summary[] =
    "       orderctl update ORDER STATUS [--expected-version N] [--reason TEXT]\n"
    "Publishes order.status.update to order.status (key = ORDER) and prints its ce_id.\n"
    "STATUS: PAID, SHIPPED, DELIVERED, CANCELLED, RETURNED or PARTIALLY_RETURNED. With --wait,\n"
    "then waits until order-status has processed it and prints \"applied: FROM -> TO\" (exit 0),\n"
    "\"rejected: why\" or the dead letter (exit 65); an unknown ORDER is then exit 66.";

static const char return_summary[] =
    "       orderctl return ORDER --item PRODUCT:QTY [--item ...] [--reason TEXT]\n"
    "Publishes return.requested (key = ORDER) and prints its ce_id. With --wait, then waits\n"
    "until the ReturnRefund execution has stopped and prints \"return <id> <STATUS> ...\":\n"
    "exit 0 for REFUND_COMPLETED, 65 for REJECTED or a dead letter; unknown ORDER: 66.";

/* Largest --file accepted (pretty-printed JSON may exceed the 64 KiB value). */
#define FILE_MAX (1024 * 1024)

/* Loads a command's settings and --item flags; returns true to go on. */
static bool load(const of_config_item *items, size_t n, publish_settings *s, int *argc, char **argv,
                 const char ***item_args, size_t *n_item_args, int *rest, const char *progname,
                 const char *summary, int *code)
{
    memset(s, 0, sizeof *s);
    if (item_args != NULL) {
        *code = orderctl_take_repeated(argc, argv, "item", item_args, n_item_args);
        if (*code != EX_OK)
            return false;
    }
    if (!orderctl_settings_load(items, n, s, *argc, argv, rest, progname, summary, code))
        return false;
    *code = orderctl_common_apply(&s->c);
    if (*code != EX_OK) {
        of_config_free(items, n, s);
        return false;
    }
    return true;
}

static int out_of_memory(void)
{
    fprintf(stderr, "orderctl: could not build the event: out of memory\n");
    return EX_SOFTWARE;
}

/* Appends {"product_id", "quantity"} for each PRODUCT:QTY to a new "items"
 * array of data. Only the syntax is checked here; the decoder checks the
 * product id rules and the 1..10000 range, as the worker will. */
static int add_items(cJSON *data, const char *const *args, size_t n)
{
    cJSON *arr = cJSON_AddArrayToObject(data, "items");
    if (arr == NULL)
        return out_of_memory();
    for (size_t i = 0; i < n; i++) {
        /* Ids may contain ':', quantities may not: split at the last one. */
        const char *colon = strrchr(args[i], ':');
        const char *q = colon != NULL ? colon + 1 : NULL;
        char *end = NULL, *pid = NULL;
        long long qty;
        cJSON *it;
        if (colon == NULL || colon == args[i] || *q == '\0' || !isdigit((unsigned char)*q)) {
            fprintf(stderr, "orderctl: invalid item \"%s\": expected PRODUCT:QTY, e.g. sku-1:2\n",
                    args[i]);
            return EX_DATAERR;
        }
        errno = 0;
        qty = strtoll(q, &end, 10);
        if (errno != 0 || *end != '\0') {
            fprintf(stderr,
                    "orderctl: invalid item \"%s\": the quantity must be a whole number from 1 "
                    "to %d\n",
                    args[i], OF_QUANTITY_MAX);
            return EX_DATAERR;
        }
        it = cJSON_CreateObject();
        if (it == NULL || !cJSON_AddItemToArray(arr, it)) {
            cJSON_Delete(it);
            return out_of_memory();
        }
        pid = strndup(args[i], (size_t)(colon - args[i]));
        if (pid == NULL || cJSON_AddStringToObject(it, "product_id", pid) == NULL ||
            cJSON_AddNumberToObject(it, "quantity", (double)qty) == NULL) {
            free(pid);
            return out_of_memory();
        }
        free(pid);
    }
    return EX_OK;
}

/* Reads the whole file (or stdin for "-") into a NUL-terminated buffer. */
static int read_file(const char *path, char **out, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0;
    int code = EX_OK;

    *out = NULL;
    if (f == NULL) {
        fprintf(stderr, "orderctl: could not open \"%s\": %s\n", path, strerror(errno));
        return EX_NOINPUT;
    }
    buf = malloc(FILE_MAX + 1);
    if (buf == NULL) {
        code = out_of_memory();
        goto out;
    }
    n = fread(buf, 1, FILE_MAX + 1, f);
    if (ferror(f)) {
        fprintf(stderr, "orderctl: could not read \"%s\": %s\n", path, strerror(errno));
        code = EX_IOERR;
        goto out;
    }
    if (n > FILE_MAX) {
        fprintf(stderr, "orderctl: could not read \"%s\": larger than %d bytes\n", path, FILE_MAX);
        code = EX_DATAERR;
        goto out;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    buf = NULL;
out:
    free(buf);
    if (f != stdin)
        fclose(f);
    return code;
}

/* Builds the binary-mode CloudEvent for data into m (zeroed by the caller)
 * and checks it as the worker would. ce_id receives the new id. */
static int build_event(of_message *m, const publish_settings *s, const char *base_topic,
                       const char *type, const char *key, const char *subject, const cJSON *data,
                       char ce_id[OF_UUID_STRLEN + 1])
{
    char topic[256];
    of_event_error err = {0};

    if (orderctl_topic(topic, sizeof topic, s->c.prefix, base_topic) != 0) {
        fprintf(stderr, "orderctl: invalid topic-prefix \"%s\": too long\n", s->c.prefix);
        return EX_USAGE;
    }
    if (of_uuid_v7(ce_id) != 0) {
        fprintf(stderr, "orderctl: could not make a ce_id: no random source\n");
        return EX_OSERR;
    }
    of_event_attrs attrs = {ce_id, type, "orderctl", subject, NULL};
    /* order.created has no order id yet: its key is the ce_id (contract
     * section 2). Built and read back as the consuming worker will. */
    if (of_contract_build(m, topic, base_topic, key != NULL ? key : ce_id, &attrs, data, &err) !=
        0) {
        fprintf(stderr, "orderctl: invalid %s event: %s: %s\n", base_topic,
                of_event_code_name(err.code), err.reason);
        return err.code == OF_EVENT_ERR_NO_MEMORY ? EX_SOFTWARE : EX_DATAERR;
    }
    return EX_OK;
}

/* Publishes m, then prints the ce_id (or JSON) and, with --wait, the outcome. */
static int publish_and_report(const publish_settings *s, of_message *m, const char *ce_id,
                              PGconn *conn, const char *since, wait_kind kind, const char *order_id)
{
    orderctl_producer p;
    orderctl_delivery at = {-1, -1};
    cJSON *out = NULL, *result = NULL;
    int code = orderctl_producer_open(&p, s->c.bootstrap, (int)s->timeout);

    if (code == EX_OK)
        code = orderctl_produce_sync(&p, m, &at);
    orderctl_producer_close(&p);
    if (code != EX_OK)
        return code;
    if (!s->json) {
        printf("%s\n", ce_id);
        fflush(stdout);
    }
    if (conn != NULL)
        code = submit_wait_outcome(conn, kind, ce_id, order_id, since, s->wait, s->json, &result);
    if (s->json) {
        out = cJSON_CreateObject();
        if (out != NULL) {
            cJSON_AddStringToObject(out, "ce_id", ce_id);
            cJSON_AddStringToObject(out, "topic", m->topic);
            cJSON_AddStringToObject(out, "key", m->key);
            cJSON_AddNumberToObject(out, "partition", at.partition);
            cJSON_AddNumberToObject(out, "offset", (double)at.offset);
            if (result != NULL) {
                cJSON_AddItemToObject(out, "outcome", result);
                result = NULL;
            }
        }
        int pcode = orderctl_print_json(out);
        if (code == EX_OK)
            code = pcode;
    }
    cJSON_Delete(result);
    return code;
}

/* Lowercases a valid UUID argument into out; EX_DATAERR otherwise. */
static int order_arg(const char *arg, char out[OF_UUID_STRLEN + 1])
{
    if (!of_uuid_valid(arg)) {
        fprintf(stderr, "orderctl: invalid order id \"%s\": expected a UUID\n", arg);
        return EX_DATAERR;
    }
    for (size_t i = 0; i <= OF_UUID_STRLEN; i++)
        out[i] = (char)tolower((unsigned char)arg[i]);
    return EX_OK;
}

int orderctl_submit(int argc, char **argv)
{
    publish_settings s;
    const char **item_args = NULL;
    size_t n_item_args = 0;
    int rest = 0, code = EX_OK;
    cJSON *data = NULL;
    char *text = NULL;
    size_t len = 0;
    of_order_created oc;
    of_event_error err = {0};
    of_message m = {0};
    char ce_id[OF_UUID_STRLEN + 1], since[64];
    PGconn *conn = NULL;

    if (!load(submit_items, N_SUBMIT_ITEMS, &s, &argc, argv, &item_args, &n_item_args, &rest,
              "orderctl submit", submit_summary, &code))
        goto out_items;
    if (rest != 1) {
        fprintf(stderr,
                "orderctl: submit takes no arguments (\"%s\"); see orderctl submit --help\n",
                argv[1]);
        code = EX_USAGE;
        goto out;
    }
    if (s.file != NULL) {
        if (s.customer != NULL || s.currency != NULL || n_item_args > 0) {
            fprintf(stderr, "orderctl: --file excludes --customer, --item and --currency\n");
            code = EX_USAGE;
            goto out;
        }
        code = read_file(s.file, &text, &len);
        if (code != EX_OK)
            goto out;
        const char *end = NULL;
        data = cJSON_ParseWithLengthOpts(text, len, &end, false);
        if (data == NULL) {
            fprintf(stderr, "orderctl: invalid JSON in \"%s\" near byte %zu\n", s.file,
                    end != NULL && end >= text ? (size_t)(end - text) : (size_t)0);
            code = EX_DATAERR;
            goto out;
        }
    } else {
        if (s.customer == NULL || n_item_args == 0) {
            fprintf(stderr, "orderctl: submit needs --customer and at least one --item (or "
                            "--file); see orderctl submit --help\n");
            code = EX_USAGE;
            goto out;
        }
        data = cJSON_CreateObject();
        if (data == NULL || cJSON_AddStringToObject(data, "customer_id", s.customer) == NULL) {
            code = out_of_memory();
            goto out;
        }
        code = add_items(data, item_args, n_item_args);
        if (code != EX_OK)
            goto out;
        if (s.currency != NULL && cJSON_AddStringToObject(data, "currency", s.currency) == NULL) {
            code = out_of_memory();
            goto out;
        }
    }
    /* The order-created worker's decoder, for a message naming the field. */
    if (of_order_created_decode(data, &oc, &err) != 0) {
        fprintf(stderr, "orderctl: invalid order: %s\n", err.reason);
        code = err.code == OF_EVENT_ERR_NO_MEMORY ? EX_SOFTWARE : EX_DATAERR;
        goto out;
    }
    code =
        build_event(&m, &s, OF_TOPIC_ORDER_CREATED, OF_TYPE_ORDER_CREATED, NULL, NULL, data, ce_id);
    if (code != EX_OK)
        goto out;
    code = submit_wait_prepare(&s, NULL, &conn, since);
    if (code != EX_OK)
        goto out;
    code = publish_and_report(&s, &m, ce_id, conn, since, WAIT_ORDER, NULL);
out:
    PQfinish(conn);
    of_message_free(&m);
    cJSON_Delete(data);
    free(text);
    of_config_free(submit_items, N_SUBMIT_ITEMS, &s);
out_items:
    free(item_args);
    return code;
}

int orderctl_update(int argc, char **argv)
{
    publish_settings s;
    int rest = 0, code = EX_OK;
    of_order_status_update u;
    of_event_error err = {0};
    cJSON *data = NULL;
    of_message m = {0};
    char ce_id[OF_UUID_STRLEN + 1], since[64];
    PGconn *conn = NULL;

    if (!load(update_items, N_UPDATE_ITEMS, &s, &argc, argv, NULL, NULL, &rest, "orderctl update",
              update_summary, &code))
        return code;
    if (rest != 3) {
        fprintf(stderr, "orderctl: usage: orderctl update ORDER STATUS [--expected-version N] "
                        "[--reason TEXT]\n");
        code = EX_USAGE;
        goto out;
    }
    memset(&u, 0, sizeof u);
    code = order_arg(argv[1], u.order_id);
    if (code != EX_OK)
        goto out;
    if (of_order_status_parse(argv[2], &u.status) != 0 || !of_order_status_is_update(u.status)) {
        fprintf(stderr,
                "orderctl: invalid status \"%s\": use PAID, SHIPPED, DELIVERED, CANCELLED, "
                "RETURNED or PARTIALLY_RETURNED\n",
                argv[2]);
        code = EX_DATAERR;
        goto out;
    }
    if (s.reason != NULL) {
        if (strlen(s.reason) >= sizeof u.reason) {
            fprintf(stderr, "orderctl: invalid reason: longer than %d characters\n", OF_REASON_MAX);
            code = EX_DATAERR;
            goto out;
        }
        u.has_reason = true;
        snprintf(u.reason, sizeof u.reason, "%s", s.reason);
    }
    if (s.expected_version > 0) {
        u.has_expected_version = true;
        u.expected_version = (int32_t)s.expected_version;
    }
    /* The encoder applies the decoder's rules (reason length, UTF-8, ...). */
    if (of_order_status_update_encode(&u, &data, &err) != 0) {
        fprintf(stderr, "orderctl: invalid update: %s\n", err.reason);
        code = err.code == OF_EVENT_ERR_NO_MEMORY ? EX_SOFTWARE : EX_DATAERR;
        goto out;
    }
    code = build_event(&m, &s, OF_TOPIC_ORDER_STATUS, OF_TYPE_ORDER_STATUS_UPDATE, u.order_id,
                       u.order_id, data, ce_id);
    if (code != EX_OK)
        goto out;
    code = submit_wait_prepare(&s, u.order_id, &conn, since);
    if (code != EX_OK)
        goto out;
    code = publish_and_report(&s, &m, ce_id, conn, since, WAIT_UPDATE, u.order_id);
out:
    PQfinish(conn);
    of_message_free(&m);
    cJSON_Delete(data);
    of_config_free(update_items, N_UPDATE_ITEMS, &s);
    return code;
}

int orderctl_return(int argc, char **argv)
{
    publish_settings s;
    const char **item_args = NULL;
    size_t n_item_args = 0;
    int rest = 0, code = EX_OK;
    of_return_requested *req = NULL;
    of_event_error err = {0};
    cJSON *data = NULL;
    of_message m = {0};
    char order_id[OF_UUID_STRLEN + 1], ce_id[OF_UUID_STRLEN + 1], since[64];
    PGconn *conn = NULL;

    if (!load(return_items, N_RETURN_ITEMS, &s, &argc, argv, &item_args, &n_item_args, &rest,
              "orderctl return", return_summary, &code))
        goto out_items;
    if (rest != 2 || n_item_args == 0) {
        fprintf(stderr, "orderctl: usage: orderctl return ORDER --item PRODUCT:QTY [--item ...] "
                        "[--reason TEXT]\n");
        code = EX_USAGE;
        goto out;
    }
    code = order_arg(argv[1], order_id);
    if (code != EX_OK)
        goto out;
    data = cJSON_CreateObject();
    if (data == NULL || cJSON_AddStringToObject(data, "order_id", order_id) == NULL) {
        code = out_of_memory();
        goto out;
    }
    code = add_items(data, item_args, n_item_args);
    if (code != EX_OK)
        goto out;
    if (s.reason != NULL && cJSON_AddStringToObject(data, "reason", s.reason) == NULL) {
        code = out_of_memory();
        goto out;
    }
    /* The return-requested worker's decoder (there is no encoder for an upstream event). */
    req = malloc(sizeof *req);
    if (req == NULL) {
        code = out_of_memory();
        goto out;
    }
    if (of_return_requested_decode(data, req, &err) != 0) {
        fprintf(stderr, "orderctl: invalid return: %s\n", err.reason);
        code = err.code == OF_EVENT_ERR_NO_MEMORY ? EX_SOFTWARE : EX_DATAERR;
        goto out;
    }
    code = build_event(&m, &s, OF_TOPIC_RETURN_REQUESTED, OF_TYPE_RETURN_REQUESTED, order_id,
                       order_id, data, ce_id);
    if (code != EX_OK)
        goto out;
    code = submit_wait_prepare(&s, order_id, &conn, since);
    if (code != EX_OK)
        goto out;
    code = publish_and_report(&s, &m, ce_id, conn, since, WAIT_RETURN, order_id);
out:
    PQfinish(conn);
    of_message_free(&m);
    cJSON_Delete(data);
    free(req);
    of_config_free(return_items, N_RETURN_ITEMS, &s);
out_items:
    free(item_args);
    return code;
}
