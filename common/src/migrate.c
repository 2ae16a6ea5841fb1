/* migrate.c: finds versioned SQL migration files and applies or reverts them
 * against PostgreSQL, with checksums and an advisory lock.
 *
 * Every call here blocks on libpq. That is fine because the migrator runs in
 * a CLI (orderctl migrate) and in tests, never inside a worker's libuv loop.
 * Checksums are SHA-256 computed by PostgreSQL itself (sha256() on the file
 * sent as a binary parameter), so orderflow carries no crypto code. */
#include "orderflow/migrate.h"

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
/* Length of a SHA-256 digest in hex. */
#define CHECKSUM_LEN 64

static const char up_suffix[] = ".up.sql";
static const char down_suffix[] = ".down.sql";

/* Writes a message into err, replacing what was there. */
static void set_err(char *err, size_t errsize, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errsize, const char *fmt, ...)
{
    va_list ap;
    if (err == NULL || errsize == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errsize, fmt, ap);
    va_end(ap);
}

/* Appends a line to err (after a '\n' when err is not empty). */
static void add_err(char *err, size_t errsize, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void add_err(char *err, size_t errsize, const char *fmt, ...)
{
    va_list ap;
    size_t used;
    if (err == NULL || errsize == 0)
        return;
    used = strnlen(err, errsize);
    if (used + 2 >= errsize)
        return;
    if (used > 0) {
        err[used++] = '\n';
        err[used] = '\0';
    }
    va_start(ap, fmt);
    vsnprintf(err + used, errsize - used, fmt, ap);
    va_end(ap);
}

/* Copies a libpq message without its trailing newlines. */
static void trimmed(char *dst, size_t size, const char *src)
{
    size_t len;
    snprintf(dst, size, "%s", src != NULL ? src : "");
    len = strlen(dst);
    while (len > 0 && (dst[len - 1] == '\n' || dst[len - 1] == '\r' || dst[len - 1] == ' '))
        dst[--len] = '\0';
}

static bool ends_with(const char *s, size_t len, const char *suffix)
{
    size_t sl = strlen(suffix);
    return len >= sl && memcmp(s + len - sl, suffix, sl) == 0;
}

static char *join_path(const char *dir, const char *file)
{
    size_t dl = strlen(dir), fl = strlen(file);
    char *path = malloc(dl + fl + 2);
    if (path == NULL)
        return NULL;
    memcpy(path, dir, dl);
    path[dl] = '/';
    memcpy(path + dl + 1, file, fl + 1);
    return path;
}

int of_migration_parse_name(const char *file, int64_t *version, char *name, size_t namesize,
                            of_migration_kind *kind, char *err, size_t errsize)
{
    size_t len, stem_len, digits = 0, name_len;
    int64_t v = 0;
    of_migration_kind k;

    if (file == NULL || version == NULL || name == NULL || kind == NULL) {
        set_err(err, errsize, "could not parse migration file name: missing argument");
        return OF_MIGRATE_EARG;
    }
    len = strlen(file);
    /* Hidden files, README.md, editor backups (x.sql~): not migrations. */
    if (file[0] == '.' || !ends_with(file, len, ".sql"))
        return 0;

    if (ends_with(file, len, up_suffix)) {
        k = OF_MIGRATION_UP;
        stem_len = len - (sizeof up_suffix - 1);
    } else if (ends_with(file, len, down_suffix)) {
        k = OF_MIGRATION_DOWN;
        stem_len = len - (sizeof down_suffix - 1);
    } else {
        set_err(err, errsize,
                "invalid migration file name \"%s\": expected NNNN_name.up.sql or "
                "NNNN_name.down.sql",
                file);
        return OF_MIGRATE_EFILES;
    }
    while (digits < stem_len && file[digits] >= '0' && file[digits] <= '9')
        digits++;
    if (digits == 0 || digits >= stem_len || file[digits] != '_') {
        set_err(err, errsize,
                "invalid migration file name \"%s\": expected a version number, \"_\" and a "
                "name before \"%s\"",
                file, k == OF_MIGRATION_UP ? up_suffix : down_suffix);
        return OF_MIGRATE_EFILES;
    }
    /* 18 decimal digits always fit in an int64_t. */
    if (digits > 18) {
        set_err(err, errsize, "invalid migration file name \"%s\": version has more than 18 digits",
                file);
        return OF_MIGRATE_EFILES;
    }
    for (size_t i = 0; i < digits; i++)
        v = v * 10 + (file[i] - '0');
    if (v < 1) {
        set_err(err, errsize, "invalid migration file name \"%s\": version must be at least 1",
                file);
        return OF_MIGRATE_EFILES;
    }
    name_len = stem_len - digits - 1;
    if (name_len == 0) {
        set_err(err, errsize, "invalid migration file name \"%s\": the name after \"_\" is empty",
                file);
        return OF_MIGRATE_EFILES;
    }
    if (name_len > OF_MIGRATE_NAME_MAX) {
        set_err(err, errsize,
                "invalid migration file name \"%s\": name is longer than %d characters", file,
                OF_MIGRATE_NAME_MAX);
        return OF_MIGRATE_EFILES;
    }
    for (size_t i = digits + 1; i < stem_len; i++) {
        char c = file[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-';
        if (!ok) {
            set_err(err, errsize,
                    "invalid migration file name \"%s\": the name may only contain letters, "
                    "digits, \"_\" and \"-\"",
                    file);
            return OF_MIGRATE_EFILES;
        }
    }
    if (name_len + 1 > namesize) {
        set_err(err, errsize, "could not parse \"%s\": name buffer too small", file);
        return OF_MIGRATE_EARG;
    }
    memcpy(name, file + digits + 1, name_len);
    name[name_len] = '\0';
    *version = v;
    *kind = k;
    return 1;
}

/* One parsed file name while a set is being built. */
typedef struct name_entry {
    int64_t version;                    /* parsed version */
    of_migration_kind kind;             /* up or down */
    const char *file;                   /* the caller's file name */
    size_t stem_len;                    /* length of "NNNN_name" */
    char name[OF_MIGRATE_NAME_MAX + 1]; /* parsed name */
} name_entry;

/* Orders by version, then up before down, then file name (so the files named
 * in a duplicate error do not depend on readdir order). */
static int compare_entries(const void *a, const void *b)
{
    const name_entry *x = a, *y = b;
    if (x->version != y->version)
        return x->version < y->version ? -1 : 1;
    if (x->kind != y->kind)
        return x->kind == OF_MIGRATION_UP ? -1 : 1;
    return strcmp(x->file, y->file);
}

void of_migration_set_free(of_migration_set *set)
{
    if (set == NULL)
        return;
    for (size_t i = 0; i < set->count; i++) {
        free(set->items[i].name);
        free(set->items[i].up_file);
        free(set->items[i].down_file);
    }
    free(set->items);
    free(set->dir);
    memset(set, 0, sizeof *set);
}

int of_migration_set_from_names(of_migration_set *set, const char *dir, const char *const *names,
                                size_t n, char *err, size_t errsize)
{
    int result = OF_MIGRATE_OK;
    name_entry *entries = NULL;
    size_t n_entries = 0;
    of_migration_set tmp = {0};

    if (set == NULL || dir == NULL || (names == NULL && n > 0)) {
        set_err(err, errsize, "could not build migration set: missing argument");
        return OF_MIGRATE_EARG;
    }
    memset(set, 0, sizeof *set);
    entries = calloc(n > 0 ? n : 1, sizeof *entries);
    if (entries == NULL) {
        result = OF_MIGRATE_ENOMEM;
        set_err(err, errsize, "could not build migration set: out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        name_entry *e = &entries[n_entries];
        int rc = of_migration_parse_name(names[i], &e->version, e->name, sizeof e->name, &e->kind,
                                         err, errsize);
        if (rc < 0) {
            result = rc;
            goto out;
        }
        if (rc == 0)
            continue;
        e->file = names[i];
        e->stem_len = strlen(names[i]) -
                      (e->kind == OF_MIGRATION_UP ? sizeof up_suffix : sizeof down_suffix) + 1;
        n_entries++;
    }
    qsort(entries, n_entries, sizeof *entries, compare_entries);

    tmp.dir = strdup(dir);
    tmp.items = calloc(n_entries > 0 ? n_entries : 1, sizeof *tmp.items);
    if (tmp.dir == NULL || tmp.items == NULL) {
        result = OF_MIGRATE_ENOMEM;
        set_err(err, errsize, "could not build migration set: out of memory");
        goto out;
    }
    for (size_t i = 0; i < n_entries;) {
        const name_entry *up = NULL, *down = NULL;
        size_t j;
        of_migration *m;
        for (j = i; j < n_entries && entries[j].version == entries[i].version; j++) {
            const name_entry *e = &entries[j];
            const name_entry **slot = e->kind == OF_MIGRATION_UP ? &up : &down;
            if (*slot != NULL) {
                set_err(err, errsize,
                        "duplicate migration version %" PRId64 " in \"%s\": \"%s\" and \"%s\"",
                        e->version, dir, (*slot)->file, e->file);
                result = OF_MIGRATE_EFILES;
                goto out;
            }
            *slot = e;
        }
        if (up == NULL) {
            set_err(err, errsize,
                    "migration version %" PRId64 " in \"%s\" has no up file: \"%s\" needs a "
                    "matching \"%.*s%s\"",
                    down->version, dir, down->file, (int)down->stem_len, down->file, up_suffix);
            result = OF_MIGRATE_EFILES;
            goto out;
        }
        if (down != NULL &&
            (down->stem_len != up->stem_len || memcmp(down->file, up->file, up->stem_len) != 0)) {
            set_err(err, errsize,
                    "down file \"%s\" in \"%s\" does not match its up file \"%s\": expected "
                    "\"%.*s%s\"",
                    down->file, dir, up->file, (int)up->stem_len, up->file, down_suffix);
            result = OF_MIGRATE_EFILES;
            goto out;
        }
        m = &tmp.items[tmp.count];
        m->version = up->version;
        m->name = strdup(up->name);
        m->up_file = strdup(up->file);
        m->down_file = down != NULL ? strdup(down->file) : NULL;
        tmp.count++;
        if (m->name == NULL || m->up_file == NULL || (down != NULL && m->down_file == NULL)) {
            result = OF_MIGRATE_ENOMEM;
            set_err(err, errsize, "could not build migration set: out of memory");
            goto out;
        }
        i = j;
    }
    *set = tmp;
    memset(&tmp, 0, sizeof tmp);
out:
    of_migration_set_free(&tmp);
    free(entries);
    return result;
}

int of_migration_set_load(of_migration_set *set, const char *dir, char *err, size_t errsize)
{
    int result = OF_MIGRATE_OK;
    DIR *d = NULL;
    char **names = NULL;
    size_t n = 0, cap = 0;

    if (set == NULL || dir == NULL) {
        set_err(err, errsize, "could not load migrations: missing argument");
        return OF_MIGRATE_EARG;
    }
    memset(set, 0, sizeof *set);
    d = opendir(dir);
    if (d == NULL) {
        set_err(err, errsize, "could not open migrations directory \"%s\": %s", dir,
                strerror(errno));
        result = OF_MIGRATE_EFILES;
        goto out;
    }
    for (;;) {
        struct dirent *de;
        struct stat st;
        char *path;
        int rc;

        errno = 0;
        de = readdir(d);
        if (de == NULL) {
            if (errno != 0) {
                set_err(err, errsize, "could not read migrations directory \"%s\": %s", dir,
                        strerror(errno));
                result = OF_MIGRATE_EFILES;
                goto out;
            }
            break;
        }
        if (de->d_name[0] == '.')
            continue;
        path = join_path(dir, de->d_name);
        if (path == NULL) {
            set_err(err, errsize, "could not load migrations: out of memory");
            result = OF_MIGRATE_ENOMEM;
            goto out;
        }
        rc = stat(path, &st);
        if (rc != 0) {
            set_err(err, errsize, "could not stat \"%s\": %s", path, strerror(errno));
            free(path);
            result = OF_MIGRATE_EFILES;
            goto out;
        }
        free(path);
        /* Subdirectories and special files are not migrations. */
        if (!S_ISREG(st.st_mode))
            continue;
        if (n == cap) {
            size_t ncap = cap > 0 ? cap * 2 : 16;
            char **grown = realloc(names, ncap * sizeof *names);
            if (grown == NULL) {
                set_err(err, errsize, "could not load migrations: out of memory");
                result = OF_MIGRATE_ENOMEM;
                goto out;
            }
            names = grown;
            cap = ncap;
        }
        names[n] = strdup(de->d_name);
        if (names[n] == NULL) {
            set_err(err, errsize, "could not load migrations: out of memory");
            result = OF_MIGRATE_ENOMEM;
            goto out;
        }
        n++;
    }
    result = of_migration_set_from_names(set, dir, (const char *const *)names, n, err, errsize);
out:
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (d != NULL)
        closedir(d);
    return result;
}

const of_migration *of_migration_set_find(const of_migration_set *set, int64_t version)
{
    if (set == NULL)
        return NULL;
    for (size_t i = 0; i < set->count; i++) {
        if (set->items[i].version == version)
            return &set->items[i];
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* The PostgreSQL side.                                                     */

int of_migrate_connect(const char *url, PGconn **conn, char *err, size_t errsize)
{
    int result = OF_MIGRATE_OK;
    PGconn *c = NULL;
    PGresult *res = NULL;
    char msg[1024];
    /* The URL goes in as "dbname" with expand_dbname so that a URI or a
     * key=value string works, and a fallback application name shows who is
     * connected in pg_stat_activity. */
    const char *const keywords[] = {"dbname", "fallback_application_name", NULL};
    const char *values[] = {url, "orderctl", NULL};

    if (conn == NULL) {
        set_err(err, errsize, "could not connect: missing argument");
        return OF_MIGRATE_EARG;
    }
    *conn = NULL;
    if (url == NULL || url[0] == '\0') {
        set_err(err, errsize, "could not connect: the database URL is empty");
        return OF_MIGRATE_EARG;
    }
    /* Parse first so a malformed URL is reported as a configuration problem
     * rather than as an unreachable server. A bare word is a database name. */
    if (strchr(url, '=') != NULL || strncmp(url, "postgresql://", 13) == 0 ||
        strncmp(url, "postgres://", 11) == 0) {
        char *perr = NULL;
        PQconninfoOption *opts = PQconninfoParse(url, &perr);
        if (opts == NULL) {
            trimmed(msg, sizeof msg, perr != NULL ? perr : "out of memory");
            set_err(err, errsize, "invalid database URL: %s", msg);
            PQfreemem(perr);
            return OF_MIGRATE_EARG;
        }
        PQconninfoFree(opts);
    }
    c = PQconnectdbParams(keywords, values, 1);
    if (c == NULL) {
        set_err(err, errsize, "could not connect to PostgreSQL: out of memory");
        result = OF_MIGRATE_ENOMEM;
        goto out;
    }
    if (PQstatus(c) != CONNECTION_OK) {
        trimmed(msg, sizeof msg, PQerrorMessage(c));
        set_err(err, errsize, "could not connect to PostgreSQL: %s", msg);
        result = OF_MIGRATE_ECONNECT;
        goto out;
    }
    /* Migration files may emit NOTICEs (DROP ... IF EXISTS and the like);
     * an operator wants the result lines, not those. Warnings still show. */
    res = PQexec(c, "set client_min_messages to warning");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        trimmed(msg, sizeof msg, PQerrorMessage(c));
        set_err(err, errsize, "could not set client_min_messages: %s", msg);
        result = PQstatus(c) == CONNECTION_BAD ? OF_MIGRATE_ECONNECT : OF_MIGRATE_ESQL;
        goto out;
    }
    of_log_debug("migrate: connected to database \"%s\" on \"%s\" port %s", PQdb(c), PQhost(c),
                 PQport(c));
    *conn = c;
    c = NULL;
out:
    PQclear(res);
    PQfinish(c);
    return result;
}

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

static int run_init(mig_run *run, PGconn *conn, const of_migration_set *set, FILE *out, char *err,
                    size_t errsize)
{
    memset(run, 0, sizeof *run);
    if (err != NULL && errsize > 0)
        err[0] = '\0';
    if (conn == NULL || set == NULL) {
        set_err(err, errsize, "could not run migrations: missing argument");
        return OF_MIGRATE_EARG;
    }
    run->conn = conn;
    run->set = set;
    run->out = out != NULL ? out : stdout;
    run->err = err;
    run->errsize = errsize;
    run->files = calloc(set->count > 0 ? set->count : 1, sizeof *run->files);
    if (run->files == NULL) {
        set_err(err, errsize, "could not run migrations: out of memory");
        return OF_MIGRATE_ENOMEM;
    }
    return OF_MIGRATE_OK;
}

static void run_free(mig_run *run)
{
    for (size_t i = 0; i < run->n_applied; i++) {
        free(run->applied[i].name);
        free(run->applied[i].applied_at);
    }
    free(run->applied);
    if (run->files != NULL) {
        for (size_t i = 0; i < run->set->count; i++)
            free(run->files[i].sql);
    }
    free(run->files);
    memset(run, 0, sizeof *run);
}

/* Records why a statement failed; returns ECONNECT when the connection is
 * gone (so the caller can say "unavailable") and ESQL otherwise. */
static int pq_fail(mig_run *run, const PGresult *res, const char *what)
{
    char msg[1024];
    const char *primary = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *detail = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
    trimmed(msg, sizeof msg, primary != NULL ? primary : PQerrorMessage(run->conn));
    if (detail != NULL)
        set_err(run->err, run->errsize, "could not %s: %s (%s)", what, msg, detail);
    else
        set_err(run->err, run->errsize, "could not %s: %s", what, msg);
    return PQstatus(run->conn) == CONNECTION_BAD ? OF_MIGRATE_ECONNECT : OF_MIGRATE_ESQL;
}

/* Runs a statement without parameters that must succeed. */
static int exec_simple(mig_run *run, const char *sql, const char *what)
{
    int result = OF_MIGRATE_OK;
    PGresult *res = PQexec(run->conn, sql);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        result = pq_fail(run, res, what);
    PQclear(res);
    return result;
}

/* Rolls back an open transaction after a failure; errors are ignored because
 * the failure being reported matters more. */
static void rollback_quietly(mig_run *run)
{
    PGTransactionStatusType ts = PQtransactionStatus(run->conn);
    if (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR)
        PQclear(PQexec(run->conn, "rollback"));
}

static int lock_migrations(mig_run *run)
{
    int result = OF_MIGRATE_OK;
    char key[32];
    const char *values[1] = {key};
    const Oid types[1] = {INT8_OID};
    PGresult *res = NULL;

    snprintf(key, sizeof key, "%" PRId64, (int64_t)OF_MIGRATE_LOCK_KEY);
    res =
        PQexecParams(run->conn, "select pg_try_advisory_lock($1)", 1, types, values, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        result = pq_fail(run, res, "take the migration lock");
        goto out;
    }
    if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
        /* Another migrator runs: wait for it rather than fail, so that two
         * deploys started together both end with the schema up to date. */
        fprintf(run->out,
                "waiting for the migration lock (advisory lock %s), held by another "
                "migrator\n",
                key);
        fflush(run->out);
        PQclear(res);
        res =
            PQexecParams(run->conn, "select pg_advisory_lock($1)", 1, types, values, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            result = pq_fail(run, res, "take the migration lock");
            goto out;
        }
    }
    run->locked = true;
    of_log_debug("migrate: holding advisory lock %s", key);
out:
    PQclear(res);
    return result;
}

static void unlock_migrations(mig_run *run)
{
    char key[32];
    const char *values[1] = {key};
    const Oid types[1] = {INT8_OID};
    if (!run->locked || PQstatus(run->conn) != CONNECTION_OK)
        return;
    rollback_quietly(run);
    snprintf(key, sizeof key, "%" PRId64, (int64_t)OF_MIGRATE_LOCK_KEY);
    PQclear(
        PQexecParams(run->conn, "select pg_advisory_unlock($1)", 1, types, values, NULL, NULL, 0));
    run->locked = false;
}

static int table_exists(mig_run *run, bool *exists)
{
    int result = OF_MIGRATE_OK;
    PGresult *res = PQexec(run->conn, "select to_regclass('schema_migrations') is not null");
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        result = pq_fail(run, res, "look for table \"schema_migrations\"");
        goto out;
    }
    *exists = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
out:
    PQclear(res);
    return result;
}

/* Creates the bookkeeping table when absent. Called with the lock held, so
 * two migrators cannot race on the CREATE. */
static int ensure_table(mig_run *run)
{
    bool exists = false;
    int result = table_exists(run, &exists);
    if (result != OF_MIGRATE_OK || exists)
        return result;
    result = exec_simple(run,
                         "create table schema_migrations ("
                         " version bigint primary key,"
                         " name text not null,"
                         " checksum text not null,"
                         " applied_at timestamptz not null default now(),"
                         " execution_ms integer not null);"
                         "comment on table schema_migrations is 'Versions applied by orderctl "
                         "migrate, with the SHA-256 of each up file'",
                         "create table \"schema_migrations\"");
    if (result == OF_MIGRATE_OK)
        fprintf(run->out, "created table schema_migrations\n");
    return result;
}

/* Reads schema_migrations (absent table: nothing applied) and links each
 * row to its file. */
static int load_applied(mig_run *run)
{
    int result = OF_MIGRATE_OK;
    PGresult *res = NULL;
    bool exists = false;
    int rows;

    result = table_exists(run, &exists);
    if (result != OF_MIGRATE_OK || !exists)
        goto out;
    res = PQexec(run->conn, "select version, name, checksum,"
                            " to_char(applied_at at time zone 'UTC',"
                            " 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
                            " from schema_migrations order by version");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        result = pq_fail(run, res, "read table \"schema_migrations\"");
        goto out;
    }
    rows = PQntuples(res);
    run->applied = calloc(rows > 0 ? (size_t)rows : 1, sizeof *run->applied);
    if (run->applied == NULL) {
        set_err(run->err, run->errsize, "could not read schema_migrations: out of memory");
        result = OF_MIGRATE_ENOMEM;
        goto out;
    }
    for (int i = 0; i < rows; i++) {
        applied_row *row = &run->applied[i];
        row->version = strtoll(PQgetvalue(res, i, 0), NULL, 10);
        row->name = strdup(PQgetvalue(res, i, 1));
        row->applied_at = strdup(PQgetvalue(res, i, 3));
        snprintf(row->checksum, sizeof row->checksum, "%s", PQgetvalue(res, i, 2));
        run->n_applied++;
        if (row->name == NULL || row->applied_at == NULL) {
            set_err(run->err, run->errsize, "could not read schema_migrations: out of memory");
            result = OF_MIGRATE_ENOMEM;
            goto out;
        }
    }
    for (size_t i = 0; i < run->set->count; i++) {
        for (size_t j = 0; j < run->n_applied; j++) {
            if (run->applied[j].version == run->set->items[i].version)
                run->files[i].applied = &run->applied[j];
        }
    }
out:
    PQclear(res);
    return result;
}

/* Reads a whole migration file; rejects NUL bytes, which PQexec would take
 * as the end of the script. */
static int read_sql_file(const char *path, char **sql, size_t *len, char *err, size_t errsize)
{
    int result = OF_MIGRATE_OK;
    FILE *f = NULL;
    char *buf = NULL;
    long size;

    *sql = NULL;
    *len = 0;
    f = fopen(path, "rb");
    if (f == NULL) {
        set_err(err, errsize, "could not open \"%s\": %s", path, strerror(errno));
        result = OF_MIGRATE_EFILES;
        goto out;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        set_err(err, errsize, "could not read \"%s\": %s", path, strerror(errno));
        result = OF_MIGRATE_EFILES;
        goto out;
    }
    if (size > MAX_FILE_BYTES) {
        set_err(err, errsize, "could not read \"%s\": larger than %ld bytes", path, MAX_FILE_BYTES);
        result = OF_MIGRATE_EFILES;
        goto out;
    }
    buf = malloc((size_t)size + 1);
    if (buf == NULL) {
        set_err(err, errsize, "could not read \"%s\": out of memory", path);
        result = OF_MIGRATE_ENOMEM;
        goto out;
    }
    if (fread(buf, 1, (size_t)size, f) != (size_t)size) {
        set_err(err, errsize, "could not read \"%s\": short read", path);
        result = OF_MIGRATE_EFILES;
        goto out;
    }
    buf[size] = '\0';
    if (memchr(buf, '\0', (size_t)size) != NULL) {
        set_err(err, errsize, "could not use \"%s\": it contains a NUL byte", path);
        result = OF_MIGRATE_EFILES;
        goto out;
    }
    *sql = buf;
    *len = (size_t)size;
    buf = NULL;
out:
    free(buf);
    if (f != NULL)
        fclose(f);
    return result;
}

/* SHA-256 of the bytes as PostgreSQL computes it; the file goes over as a
 * binary bytea parameter so no escaping can alter it. */
static int checksum_of(mig_run *run, const char *data, size_t len, const char *path,
                       char out[CHECKSUM_LEN + 1])
{
    int result = OF_MIGRATE_OK;
    const char *values[1] = {data};
    const int lengths[1] = {(int)len};
    const int formats[1] = {1};
    const Oid types[1] = {BYTEA_OID};
    char what[512];
    PGresult *res = PQexecParams(run->conn, "select encode(sha256($1::bytea), 'hex')", 1, types,
                                 values, lengths, formats, 0);
    snprintf(what, sizeof what, "compute the checksum of \"%s\"", path);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 ||
        strlen(PQgetvalue(res, 0, 0)) != CHECKSUM_LEN) {
        result = pq_fail(run, res, what);
        goto out;
    }
    memcpy(out, PQgetvalue(res, 0, 0), CHECKSUM_LEN + 1);
out:
    PQclear(res);
    return result;
}

/* Reads and checksums the up files: all of them (up needs the pending ones'
 * contents too) or only the applied ones. */
static int prepare_files(mig_run *run, bool all)
{
    int result = OF_MIGRATE_OK;
    char *path = NULL;
    for (size_t i = 0; i < run->set->count; i++) {
        file_state *fs = &run->files[i];
        if (!all && fs->applied == NULL)
            continue;
        path = join_path(run->set->dir, run->set->items[i].up_file);
        if (path == NULL) {
            set_err(run->err, run->errsize, "could not read migrations: out of memory");
            result = OF_MIGRATE_ENOMEM;
            goto out;
        }
        result = read_sql_file(path, &fs->sql, &fs->len, run->err, run->errsize);
        if (result != OF_MIGRATE_OK)
            goto out;
        result = checksum_of(run, fs->sql, fs->len, path, fs->checksum);
        if (result != OF_MIGRATE_OK)
            goto out;
        free(path);
        path = NULL;
    }
out:
    free(path);
    return result;
}

/* Compares every applied version with its file; reports all mismatches. */
static int check_applied(mig_run *run)
{
    int problems = 0;
    if (run->err != NULL && run->errsize > 0)
        run->err[0] = '\0';
    for (size_t j = 0; j < run->n_applied; j++) {
        const applied_row *row = &run->applied[j];
        const of_migration *m = of_migration_set_find(run->set, row->version);
        if (m == NULL) {
            add_err(run->err, run->errsize,
                    "applied migration version %" PRId64 " (\"%s\") has no up file in \"%s\"",
                    row->version, row->name, run->set->dir);
            problems++;
            continue;
        }
        const file_state *fs = &run->files[m - run->set->items];
        if (strcmp(fs->checksum, row->checksum) != 0) {
            add_err(run->err, run->errsize,
                    "applied migration \"%s/%s\" (version %" PRId64 ") has changed: checksum "
                    "in schema_migrations %s, file checksum %s",
                    run->set->dir, m->up_file, row->version, row->checksum, fs->checksum);
            problems++;
        }
    }
    if (problems == 0)
        return OF_MIGRATE_OK;
    add_err(run->err, run->errsize,
            "applied migrations must not change: restore the file, or put the change in a new "
            "migration");
    return OF_MIGRATE_ECHANGED;
}

static int64_t current_version(const mig_run *run)
{
    return run->n_applied > 0 ? run->applied[run->n_applied - 1].version : 0;
}

/* Line of the 1-based character position PostgreSQL reported, counting
 * UTF-8 characters (positions are in characters, not bytes). */
static long line_of_position(const char *sql, size_t len, const char *position)
{
    long pos = position != NULL ? strtol(position, NULL, 10) : 0;
    long chars = 0, line = 1;
    if (pos < 1)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)sql[i];
        if ((c & 0xC0) == 0x80)
            continue;
        if (++chars >= pos)
            return line;
        if (c == '\n')
            line++;
    }
    return line;
}

static int64_t elapsed_ms(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (int64_t)(t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

/* Runs one migration file and its bookkeeping in one transaction: the file
 * goes through PQexec (simple query protocol, so it may hold many
 * statements), then schema_migrations gets its row (up) or loses it (down). */
static int apply_one(mig_run *run, const of_migration *m, const char *sql, size_t len,
                     const char *checksum, bool up)
{
    int result = OF_MIGRATE_OK;
    PGresult *res = NULL;
    char *path = join_path(run->set->dir, up ? m->up_file : m->down_file);
    char version[32], ms_text[32];
    struct timespec t0;
    int64_t ms;
    ExecStatusType st;

    if (path == NULL) {
        set_err(run->err, run->errsize, "could not apply migrations: out of memory");
        return OF_MIGRATE_ENOMEM;
    }
    snprintf(version, sizeof version, "%" PRId64, m->version);
    of_log_debug("migrate: running \"%s\"", path);
    result = exec_simple(run, "begin", "begin a transaction");
    if (result != OF_MIGRATE_OK)
        goto out;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    res = PQexec(run->conn, sql);
    st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY) {
        char what[600];
        long line = line_of_position(sql, len, PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION));
        if (line > 0)
            snprintf(what, sizeof what, "apply \"%s\" (version %s): line %ld", path, version, line);
        else
            snprintf(what, sizeof what, "apply \"%s\" (version %s)", path, version);
        result = pq_fail(run, res, what);
        goto out;
    }
    PQclear(res);
    res = NULL;
    /* A COMMIT or ROLLBACK inside the file would detach its statements from
     * the bookkeeping row; catch it instead of recording a half truth. */
    if (PQtransactionStatus(run->conn) != PQTRANS_INTRANS) {
        set_err(run->err, run->errsize,
                "could not apply \"%s\" (version %s): the file ended the transaction itself; "
                "migration files must not contain BEGIN, COMMIT or ROLLBACK (check the schema "
                "by hand: its statements may be committed without a schema_migrations row)",
                path, version);
        result = OF_MIGRATE_ESQL;
        goto out;
    }
    ms = elapsed_ms(&t0);
    if (ms > INT32_MAX)
        ms = INT32_MAX;
    snprintf(ms_text, sizeof ms_text, "%" PRId64, ms);
    if (up) {
        const char *values[4] = {version, m->name, checksum, ms_text};
        const Oid types[4] = {INT8_OID, TEXT_OID, TEXT_OID, INT4_OID};
        res = PQexecParams(run->conn,
                           "insert into schema_migrations (version, name, checksum, execution_ms)"
                           " values ($1, $2, $3, $4)",
                           4, types, values, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            result = pq_fail(run, res, "record the migration in \"schema_migrations\"");
            goto out;
        }
    } else {
        const char *values[1] = {version};
        const Oid types[1] = {INT8_OID};
        res = PQexecParams(run->conn, "delete from schema_migrations where version = $1", 1, types,
                           values, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_COMMAND_OK || strcmp(PQcmdTuples(res), "1") != 0) {
            result = pq_fail(run, res, "remove the migration from \"schema_migrations\"");
            goto out;
        }
    }
    PQclear(res);
    res = NULL;
    result = exec_simple(run, "commit", "commit the migration");
    if (result != OF_MIGRATE_OK)
        goto out;
    fprintf(run->out, "%s %" PRId64 " %s in %" PRId64 " ms\n", up ? "applied" : "reverted",
            m->version, m->name, ms);
    fflush(run->out);
out:
    if (result != OF_MIGRATE_OK)
        rollback_quietly(run);
    PQclear(res);
    free(path);
    return result;
}

int of_migrate_up(PGconn *conn, const of_migration_set *set, int64_t to, FILE *out, char *err,
                  size_t errsize)
{
    mig_run run;
    int result = run_init(&run, conn, set, out, err, errsize);
    int64_t version;
    size_t applied_now = 0;

    if (result != OF_MIGRATE_OK)
        goto out;
    result = lock_migrations(&run);
    if (result != OF_MIGRATE_OK)
        goto out;
    result = ensure_table(&run);
    if (result != OF_MIGRATE_OK)
        goto out;
    result = load_applied(&run);
    if (result != OF_MIGRATE_OK)
        goto out;
    result = prepare_files(&run, true);
    if (result != OF_MIGRATE_OK)
        goto out;
    result = check_applied(&run);
    if (result != OF_MIGRATE_OK)
        goto out;
    version = current_version(&run);
    /* A pending version below the newest applied one usually comes from a
     * merge; applying it out of order could depend on tables a later version
     * dropped, so ask for a renumbering instead. */
    for (size_t i = 0; i < set->count; i++) {
        if (run.files[i].applied == NULL && set->items[i].version < version) {
            set_err(err, errsize,
                    "pending migration \"%s/%s\" (version %" PRId64 ") is older than the newest "
                    "applied version %" PRId64 ": give it a version above %" PRId64,
                    set->dir, set->items[i].up_file, set->items[i].version, version, version);
            result = OF_MIGRATE_ECHANGED;
            goto out;
        }
    }
    for (size_t i = 0; i < set->count; i++) {
        const of_migration *m = &set->items[i];
        if (run.files[i].applied != NULL || (to >= 0 && m->version > to))
            continue;
        result =
            apply_one(&run, m, run.files[i].sql, run.files[i].len, run.files[i].checksum, true);
        if (result != OF_MIGRATE_OK)
            goto out;
        version = m->version;
        applied_now++;
    }
    if (applied_now == 0)
        fprintf(run.out, "nothing to apply, schema at version %" PRId64 "\n", version);
    else
        fprintf(run.out, "schema at version %" PRId64 "\n", version);
out:
    unlock_migrations(&run);
    run_free(&run);
    return result;
}

int of_migrate_down(PGconn *conn, const of_migration_set *set, int64_t to, FILE *out, char *err,
                    size_t errsize)
{
    mig_run run;
    int result = run_init(&run, conn, set, out, err, errsize);
    char *path = NULL, *sql = NULL;
    size_t len = 0, reverted = 0;

    if (result != OF_MIGRATE_OK)
        goto out;
    if (to < 0) {
        set_err(err, errsize,
                "could not revert: down needs an explicit target version (0 "
                "reverts everything)");
        result = OF_MIGRATE_EARG;
        goto out;
    }
    result = lock_migrations(&run);
    if (result != OF_MIGRATE_OK)
        goto out;
    result = ensure_table(&run);
    if (result != OF_MIGRATE_OK)
        goto out;
    result = load_applied(&run);
    if (result != OF_MIGRATE_OK)
        goto out;
    result = prepare_files(&run, false);
    if (result != OF_MIGRATE_OK)
        goto out;
    result = check_applied(&run);
    if (result != OF_MIGRATE_OK)
        goto out;
    /* Every version to revert needs a down file; check them all before the
     * first one runs so a missing file does not leave us half way. */
    for (size_t j = run.n_applied; j-- > 0;) {
        const of_migration *m = of_migration_set_find(set, run.applied[j].version);
        if (run.applied[j].version <= to)
            break;
        if (m->down_file == NULL) {
            set_err(err, errsize,
                    "could not revert version %" PRId64 ": \"%s\" has no \"%" PRId64 "_%s%s\" "
                    "(nothing was reverted)",
                    m->version, set->dir, m->version, m->name, down_suffix);
            result = OF_MIGRATE_EFILES;
            goto out;
        }
    }
    for (size_t j = run.n_applied; j-- > 0;) {
        const of_migration *m = of_migration_set_find(set, run.applied[j].version);
        if (run.applied[j].version <= to)
            break;
        path = join_path(set->dir, m->down_file);
        if (path == NULL) {
            set_err(err, errsize, "could not revert: out of memory");
            result = OF_MIGRATE_ENOMEM;
            goto out;
        }
        result = read_sql_file(path, &sql, &len, err, errsize);
        if (result != OF_MIGRATE_OK)
            goto out;
        result = apply_one(&run, m, sql, len, NULL, false);
        if (result != OF_MIGRATE_OK)
            goto out;
        free(sql);
        sql = NULL;
        free(path);
        path = NULL;
        reverted++;
    }
    {
        /* The newest version still applied after the reverts. */
        int64_t now = 0;
        for (size_t j = 0; j < run.n_applied && run.applied[j].version <= to; j++)
            now = run.applied[j].version;
        if (reverted == 0)
            fprintf(run.out, "nothing to revert, schema at version %" PRId64 "\n", now);
        else
            fprintf(run.out, "schema at version %" PRId64 "\n", now);
    }
out:
    free(sql);
    free(path);
    unlock_migrations(&run);
    run_free(&run);
    return result;
}

int of_migrate_status(PGconn *conn, const of_migration_set *set, FILE *out, char *err,
                      size_t errsize)
{
    mig_run run;
    int result = run_init(&run, conn, set, out, err, errsize);
    size_t i = 0, j = 0, pending = 0, bad = 0;

    if (result != OF_MIGRATE_OK)
        goto out;
    result = load_applied(&run);
    if (result != OF_MIGRATE_OK)
        goto out;
    result = prepare_files(&run, false);
    if (result != OF_MIGRATE_OK)
        goto out;
    fprintf(run.out, "%-8s %-32s %-8s %-9s %s\n", "version", "name", "state", "checksum",
            "applied_at");
    /* Merge the files and the rows, both ascending by version. */
    while (i < set->count || j < run.n_applied) {
        const of_migration *m = i < set->count ? &set->items[i] : NULL;
        const applied_row *row = j < run.n_applied ? &run.applied[j] : NULL;
        if (m != NULL && (row == NULL || m->version < row->version)) {
            fprintf(run.out, "%-8" PRId64 " %-32s %-8s %-9s %s\n", m->version, m->name, "pending",
                    "-", "-");
            pending++;
            i++;
        } else if (m == NULL || row->version < m->version) {
            fprintf(run.out, "%-8" PRId64 " %-32s %-8s %-9s %s\n", row->version, row->name,
                    "applied", "MISSING", row->applied_at);
            bad++;
            j++;
        } else {
            bool same = strcmp(run.files[i].checksum, row->checksum) == 0;
            fprintf(run.out, "%-8" PRId64 " %-32s %-8s %-9s %s\n", m->version, m->name, "applied",
                    same ? "ok" : "CHANGED", row->applied_at);
            bad += same ? 0 : 1;
            i++;
            j++;
        }
    }
    fprintf(run.out, "schema at version %" PRId64 ": %zu applied, %zu pending",
            current_version(&run), run.n_applied, pending);
    if (bad > 0)
        fprintf(run.out, ", %zu changed or missing (see orderctl migrate verify)", bad);
    fprintf(run.out, "\n");
out:
    run_free(&run);
    return result;
}

int of_migrate_verify(PGconn *conn, const of_migration_set *set, FILE *out, char *err,
                      size_t errsize)
{
    mig_run run;
    int result = run_init(&run, conn, set, out, err, errsize);

    if (result != OF_MIGRATE_OK)
        goto out;
    result = load_applied(&run);
    if (result != OF_MIGRATE_OK)
        goto out;
    result = prepare_files(&run, false);
    if (result != OF_MIGRATE_OK)
        goto out;
    result = check_applied(&run);
    if (result != OF_MIGRATE_OK)
        goto out;
    fprintf(run.out,
            "ok: %zu applied migrations match their files in \"%s\", schema at version "
            "%" PRId64 "\n",
            run.n_applied, set->dir, current_version(&run));
out:
    run_free(&run);
    return result;
}
