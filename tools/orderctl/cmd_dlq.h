/* cmd_dlq.h: what orderctl dlq's files share (cmd_dlq.c: list, show, history;
 * cmd_dlq_where.c: the --where predicate; cmd_dlq_redrive.c: redrive). */
#ifndef ORDERCTL_CMD_DLQ_H
#define ORDERCTL_CMD_DLQ_H

#include "orderctl.h"

#include "orderflow/uuid.h"

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <libpq-fe.h>

/* Settings of every dlq action. */
typedef struct dlq_settings {
    orderctl_common c; /* database, Kafka, topic prefix, log level */
    char *topic;       /* shorthand for --where topic=T */
    char *where;       /* list, redrive: the predicate (dlq_where) */
    int64_t limit;     /* list: rows at most; redrive by predicate: dead letters per run */
    int dry_run;       /* redrive: print what would be sent and why, send nothing */
    int again;         /* redrive ID...: send ids redriven before once more */
    int64_t rate;      /* redrive: records per second at most (0: no limit) */
    char *note;        /* redrive: why, kept in the run's row */
    char *operator_;   /* redrive: who, kept in the run's row (default user@host) */
    int64_t timeout;   /* redrive: ms the broker may take per record */
    int json;          /* print JSON */
} dlq_settings;

/* The columns list and show have in common (dead_letters d). */
#define DL_COLUMNS                                                                                 \
    "d.id, " OF_DB_TS("d.created_at") " as created_at, d.worker, d.topic, d.partition,"            \
                                      " d.\"offset\", d.ce_id, d.ce_type, d.error_code, "          \
                                      "d.reason, d.redrive_count,"                                 \
                                      " " OF_DB_TS("d.redriven_at") " as redriven_at"

/* A selection of dead letters: --where's terms, ANDed. Parsed by
 * dlq_where_parse(); the strings point into buf. */
typedef struct dlq_where {
    char *buf;                           /* the predicate's copy the terms point into */
    const char *topic;                   /* topic=, as given */
    char topic_prefixed[512];            /* topic= with the topic prefix */
    const char *worker;                  /* worker= */
    const char *code;                    /* code= (error code) */
    const char *reason;                  /* reason= (whole reason) */
    char *reason_like;                   /* reason~ as an ILIKE pattern (heap) */
    const char *reason_part;             /* reason~ as given */
    const char *type;                    /* type= (ce_type) */
    const char *order;                   /* order= (the record's key) */
    char order_uuid[OF_UUID_STRLEN + 1]; /* order= when it is a UUID, else "" */
    char since[OF_EVENT_TIME_MAX + 1];   /* since=, resolved; "" when unset */
    char until[OF_EVENT_TIME_MAX + 1];   /* until=, resolved; "" when unset */
    const char *redriven;                /* redriven=: "no", "yes" or "any" */
    char text[2048];                     /* the predicate, normalised (times resolved) */
} dlq_where;

/* Parses text ("key=value and key~value ..."; NULL for none) with topic (the
 * --topic shorthand, or NULL) into w; redriven_default applies when the
 * predicate names no redriven= term. Returns EX_OK, or EX_USAGE with the
 * reason printed. dlq_where_free() it either way. */
int dlq_where_parse(dlq_where *w, const char *text, const char *topic, const char *prefix,
                    const char *redriven_default);
void dlq_where_free(dlq_where *w);
/* The dead letters w selects, at most limit, oldest first (or newest first),
 * with columns (over dead_letters d) and a last column "why": the values that
 * made each row match. */
int dlq_where_query(PGconn *conn, const dlq_where *w, const char *columns, int64_t limit,
                    bool newest_first, PGresult **out);

/* Helpers of cmd_dlq.c that redrive uses too. */
int dlq_add_bytes_json(cJSON *obj, const char *name, const char *bytes, size_t len, bool null);
void dlq_print_bytes(const char *label, const char *bytes, size_t len, bool null);
void dlq_print_headers(const char *json, const char *indent);
int dlq_parse_id(const char *text, int64_t *id);
/* orderctl dlq redrive ID... | --where P (cmd_dlq_redrive.c); returns a sysexits code. */
int dlq_redrive(const dlq_settings *s, PGconn *conn, int n_args, char **args);

#endif
