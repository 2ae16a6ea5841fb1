/* cmd_dlq.h: what orderctl dlq's two files share (cmd_dlq.c: list, show; cmd_dlq_redrive.c:
 * redrive). */
#ifndef ORDERCTL_CMD_DLQ_H
#define ORDERCTL_CMD_DLQ_H

#include "orderctl.h"

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <libpq-fe.h>

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

/* Helpers of cmd_dlq.c that redrive uses too. */
int dlq_bytea_col(const PGresult *r, int row, int c, char **out, size_t *len, bool *null);
int dlq_add_bytes_json(cJSON *obj, const char *name, const char *bytes, size_t len, bool null);
void dlq_print_bytes(const char *label, const char *bytes, size_t len, bool null);
void dlq_print_headers(const char *json, const char *indent);
int dlq_parse_id(const char *text, int64_t *id);
/* orderctl dlq redrive ID... | --topic T (cmd_dlq_redrive.c); returns a sysexits code. */
int dlq_redrive(const dlq_settings *s, PGconn *conn, int n_args, char **args);

#endif
