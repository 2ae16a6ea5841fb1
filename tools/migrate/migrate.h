/* migrate.h: versioned SQL migrations (golang-migrate file naming) applied to
 * PostgreSQL with checksums, shared by `orderctl migrate` and the tests.
 *
 * A migration directory holds NNNN_name.up.sql and, optionally,
 * NNNN_name.down.sql; the version is NNNN as an integer (at least 1), sorted
 * numerically, gaps allowed. Files not ending in ".sql" (README.md, editor
 * backups) and hidden files are ignored; a ".sql" file that does not match the
 * pattern, two files for one version and direction, a down file without its up
 * file, or a down file named differently from its up file make the directory
 * invalid.
 *
 * The database side keeps one row per applied version in schema_migrations
 * (created when absent) with the SHA-256 of the up file as PostgreSQL computed
 * it. up and down hold a session advisory lock (OF_MIGRATE_LOCK_KEY) for the
 * whole run, refuse to run when an applied file changed or disappeared, and
 * apply each version in its own transaction.
 *
 * These functions block on libpq. That is deliberate: they run in a CLI, never
 * inside a worker's libuv loop, where a blocking call would stall every
 * consumer.
 *
 * Ownership: an of_migration_set owns every string it holds and is released
 * with of_migration_set_free(). The PGconn from of_migrate_connect() belongs to
 * the caller, who closes it with PQfinish(). Error texts are written into
 * caller-supplied buffers (OF_MIGRATE_ERRSIZE bytes is enough); they may hold
 * several lines separated by '\n' and never contain the database password. */
#ifndef ORDERFLOW_MIGRATE_H
#define ORDERFLOW_MIGRATE_H

#include <libpq-fe.h>

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Key of the session advisory lock held by up and down: the ASCII bytes of
 * "orderflw" as a big-endian 64-bit integer (8030591472428805239). */
#define OF_MIGRATE_LOCK_KEY INT64_C(0x6f72646572666c77)

/* A suitable size for the err buffers below. */
#define OF_MIGRATE_ERRSIZE 4096

/* Longest accepted migration name (the part between "NNNN_" and ".up.sql"). */
#define OF_MIGRATE_NAME_MAX 100

/* Result codes; orderctl maps them to sysexits.h codes (in parentheses). */
#define OF_MIGRATE_OK     0
#define OF_MIGRATE_ENOMEM -1 /* out of memory (EX_SOFTWARE) */
#define OF_MIGRATE_EFILES -2 /* the directory or a file in it is unusable (EX_CONFIG) */
#define OF_MIGRATE_ECONNECT                                                                        \
    -3 /* PostgreSQL unreachable or the connection was lost (EX_UNAVAILABLE) */
#define OF_MIGRATE_ECHANGED -4 /* files disagree with schema_migrations (EX_DATAERR) */
#define OF_MIGRATE_ESQL     -5 /* a statement failed (EX_SOFTWARE) */
#define OF_MIGRATE_EARG     -6 /* bad argument, e.g. a malformed database URL (EX_USAGE/EX_CONFIG) */

/* Direction of one migration file. */
typedef enum of_migration_kind {
    OF_MIGRATION_UP = 0,   /* NNNN_name.up.sql */
    OF_MIGRATION_DOWN = 1, /* NNNN_name.down.sql */
} of_migration_kind;

/* One version of the schema as found on disk. */
typedef struct of_migration {
    int64_t version; /* NNNN as an integer, >= 1 */
    char *name;      /* the part between "NNNN_" and ".up.sql", e.g. "init" */
    char *up_file;   /* file name (no directory) of the up file */
    char *down_file; /* file name of the down file, or NULL when there is none */
} of_migration;

/* All migrations of one directory, sorted by version. */
typedef struct of_migration_set {
    char *dir;           /* directory the files live in */
    of_migration *items; /* ascending by version, no duplicates */
    size_t count;        /* number of items */
} of_migration_set;

/* Parses one directory entry name. Returns 1 when it is a migration file
 * (version, name and kind are filled; name gets at most namesize - 1 bytes),
 * 0 when it is not a migration file and must be ignored, or OF_MIGRATE_EFILES
 * when it ends in ".sql" but does not match NNNN_name.(up|down).sql with
 * NNNN >= 1 (at most 18 digits) and name of [A-Za-z0-9_-] (reason in err). */
int of_migration_parse_name(const char *file, int64_t *version, char *name, size_t namesize,
                            of_migration_kind *kind, char *err, size_t errsize)
    __attribute__((warn_unused_result));

/* Builds a set from a list of file names (as if they were dir's entries).
 * On error set is left empty and err says which file is at fault. */
int of_migration_set_from_names(of_migration_set *set, const char *dir, const char *const *names,
                                size_t n, char *err, size_t errsize)
    __attribute__((warn_unused_result));

/* Reads dir's regular files and builds the set as of_migration_set_from_names(). */
int of_migration_set_load(of_migration_set *set, const char *dir, char *err, size_t errsize)
    __attribute__((warn_unused_result));

/* The migration with that version, or NULL. */
const of_migration *of_migration_set_find(const of_migration_set *set, int64_t version);

/* Frees what the set holds and leaves it empty; safe on a zeroed set. */
void of_migration_set_free(of_migration_set *set);

/* Connects (url is a libpq URI or key=value string), quiets notices below
 * WARNING and sets application_name "orderctl" unless the URL sets one.
 * Returns OF_MIGRATE_EARG for a malformed URL, OF_MIGRATE_ECONNECT when the
 * server cannot be reached. *conn is NULL on error. */
int of_migrate_connect(const char *url, PGconn **conn, char *err, size_t errsize)
    __attribute__((warn_unused_result));

/* Applies pending versions up to and including `to` (to < 0: all), one
 * transaction each, printing "applied N name in X ms" per version to out and
 * then "schema at version N", or "nothing to apply, schema at version N".
 * Refuses (OF_MIGRATE_ECHANGED) when an applied up file changed or is missing,
 * or when a pending version is older than the newest applied one. */
int of_migrate_up(PGconn *conn, const of_migration_set *set, int64_t to, FILE *out, char *err,
                  size_t errsize) __attribute__((warn_unused_result));

/* Reverts applied versions above `to` (0: all) newest first with their down
 * files, after the same checks as of_migrate_up(); every version to revert
 * needs a down file (checked before anything is reverted). */
int of_migrate_down(PGconn *conn, const of_migration_set *set, int64_t to, FILE *out, char *err,
                    size_t errsize) __attribute__((warn_unused_result));

/* Prints one line per version known to the files or the database: state
 * (applied/pending), checksum (ok/CHANGED/MISSING/-) and applied_at. Does not
 * create schema_migrations or take the lock. Returns 0 even when a checksum is
 * CHANGED: the table reports it. */
int of_migrate_status(PGconn *conn, const of_migration_set *set, FILE *out, char *err,
                      size_t errsize) __attribute__((warn_unused_result));

/* Checks applied versions' checksums only: 0 and a line on out when they all
 * match, OF_MIGRATE_ECHANGED with every mismatch in err otherwise. */
int of_migrate_verify(PGconn *conn, const of_migration_set *set, FILE *out, char *err,
                      size_t errsize) __attribute__((warn_unused_result));

#endif
