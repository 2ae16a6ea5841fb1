/* migrate_internal.h: what the migrator's files share (one run's state and its helpers); not
 * installed. */
#ifndef ORDERFLOW_MIGRATE_INTERNAL_H
#define ORDERFLOW_MIGRATE_INTERNAL_H

#include "migrate.h"

#include "orderflow/log.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* A migration bigger than this is almost certainly a mistake (a data dump). */
#define MAX_FILE_BYTES (64L * 1024 * 1024)
/* Type OIDs from pg_type, for PQexecParams. */
#define BYTEA_OID 17
#define INT8_OID  20
#define INT4_OID  23
#define TEXT_OID  25
/* File name endings of the two directions. */
#define MIG_UP_SUFFIX   ".up.sql"
#define MIG_DOWN_SUFFIX ".down.sql"
/* Length of a SHA-256 digest in hex. */
#define CHECKSUM_LEN 64

/* One row of schema_migrations. */
typedef struct applied_row {
    int64_t version;                 /* applied version */
    char *name;                      /* name recorded when it was applied */
    char checksum[CHECKSUM_LEN + 1]; /* SHA-256 hex of the up file when applied */
    char *applied_at;                /* UTC timestamp as text */
} applied_row;

/* What one run knows about one migration file. */
typedef struct file_state {
    char *sql;                       /* up file contents (NUL terminated), or NULL if not read */
    size_t len;                      /* length of sql */
    char checksum[CHECKSUM_LEN + 1]; /* SHA-256 hex of the up file, "" until computed */
    const applied_row *applied;      /* its schema_migrations row, or NULL when pending */
} file_state;

/* Everything one up/down/status/verify call works with; freed at its end. */
typedef struct mig_run {
    PGconn *conn;                /* borrowed connection */
    const of_migration_set *set; /* borrowed migration set */
    FILE *out;                   /* where progress lines go */
    char *err;                   /* caller's error buffer */
    size_t errsize;              /* its size */
    applied_row *applied;        /* schema_migrations rows, ascending by version */
    size_t n_applied;            /* number of rows */
    file_state *files;           /* one per set item, same order */
    bool locked;                 /* the advisory lock is held */
} mig_run;

void mig_set_err(char *err, size_t errsize, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void mig_add_err(char *err, size_t errsize, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void mig_trimmed(char *dst, size_t size, const char *src);
bool mig_ends_with(const char *s, size_t len, const char *suffix);
char *mig_join_path(const char *dir, const char *file);
int mig_run_init(mig_run *run, PGconn *conn, const of_migration_set *set, FILE *out, char *err,
                 size_t errsize);
void mig_run_free(mig_run *run);
int mig_pq_fail(mig_run *run, const PGresult *res, const char *what);
int mig_exec_simple(mig_run *run, const char *sql, const char *what);
void mig_rollback_quietly(mig_run *run);
int mig_lock_migrations(mig_run *run);
void mig_unlock_migrations(mig_run *run);
int mig_table_exists(mig_run *run, bool *exists);
int mig_ensure_table(mig_run *run);
int mig_load_applied(mig_run *run);
int mig_read_sql_file(const char *path, char **sql, size_t *len, char *err, size_t errsize);
int mig_checksum_of(mig_run *run, const char *data, size_t len, const char *path,
                    char out[CHECKSUM_LEN + 1]);
int mig_prepare_files(mig_run *run, bool all);
int mig_check_applied(mig_run *run);
int64_t mig_current_version(const mig_run *run);
long mig_line_of_position(const char *sql, size_t len, const char *position);
int64_t mig_elapsed_ms(const struct timespec *t0);

#endif
