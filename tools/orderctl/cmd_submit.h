/* cmd_submit.h: what orderctl submit/update/return (cmd_submit.c) and their --wait (cmd_wait.c)
 * share. */
#ifndef ORDERCTL_CMD_SUBMIT_H
#define ORDERCTL_CMD_SUBMIT_H

#include "orderctl.h"

#include <cjson/cJSON.h>
#include <libpq-fe.h>
#include <stdint.h>

/* Settings of submit, update and return (each table uses the fields it needs). */
typedef struct publish_settings {
    orderctl_common c;        /* database, Kafka, topic prefix, log level */
    char *customer;           /* submit: customer id */
    char *currency;           /* submit: currency, NULL for the contract's default */
    char *file;               /* submit: order.created data as a JSON file, "-" for stdin */
    char *reason;             /* update, return: free-text reason, or NULL */
    int64_t expected_version; /* update: apply only at this version; 0 when not given */
    int64_t timeout;          /* ms the broker may take to acknowledge the record */
    int64_t wait;             /* ms to wait for the workers' outcome; 0: do not wait */
    int json;                 /* print a JSON object instead of the ce_id */
} publish_settings;

/* What --wait looks for, per command. */
typedef enum wait_kind { WAIT_ORDER, WAIT_UPDATE, WAIT_RETURN } wait_kind;

int submit_wait_outcome(PGconn *conn, wait_kind kind, const char *ce_id, const char *order_id,
                        const char *since, int64_t wait_ms, int json, cJSON **result);
int submit_wait_prepare(const publish_settings *s, const char *order_id, PGconn **conn,
                        char since[64]);

#endif
