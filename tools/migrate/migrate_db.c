/* migrate_db.c: the PostgreSQL side of a migration run: connection, lock, schema_migrations,
 * checksums.
 *
 * Every call here blocks on libpq. That is fine because the migrator runs in
 * a CLI (orderctl migrate) and in tests, never inside a worker's libuv loop.
 * Checksums are SHA-256 computed by PostgreSQL itself (sha256() on the file
 * sent as a binary parameter), so orderflow carries no crypto code. */
#include "migrate_internal.h"

#include "orderflow/log.h"

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
        mig_set_err(err, errsize, "could not connect: missing argument");
        return OF_MIGRATE_EARG;
    }
    *conn = NULL;
    if (url == NULL || url[0] == '\0') {
        mig_set_err(err, errsize, "could not connect: the database URL is empty");
        return OF_MIGRATE_EARG;
    }
    /* Parse first so a malformed URL is reported as a configuration problem
     * rather than as an unreachable server. A bare word is a database name. */
    if (strchr(url, '=') != NULL || strncmp(url, "postgresql://", 13) == 0 ||
        strncmp(url, "postgres://", 11) == 0) {
        char *perr = NULL;
        PQconninfoOption *opts = PQconninfoParse(url, &perr);
        if (opts == NULL) {
            mig_trimmed(msg, sizeof msg, perr != NULL ? perr : "out of memory");
            mig_set_err(err, errsize, "invalid database URL: %s", msg);
            PQfreemem(perr);
            return OF_MIGRATE_EARG;
        }
        PQconninfoFree(opts);
    }
    c = PQconnectdbParams(keywords, values, 1);
    if (c == NULL) {
        mig_set_err(err, errsize, "could not connect to PostgreSQL: out of memory");
        result = OF_MIGRATE_ENOMEM;
        goto out;
    }
    if (PQstatus(c) != CONNECTION_OK) {
        mig_trimmed(msg, sizeof msg, PQerrorMessage(c));
        mig_set_err(err, errsize, "could not connect to PostgreSQL: %s", msg);
        result = OF_MIGRATE_ECONNECT;
        goto out;
    }
    /* Migration files may emit NOTICEs (DROP ... IF EXISTS and the like);
     * an operator wants the result lines, not those. Warnings still show. */
    res = PQexec(c, "set client_min_messages to warning");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        mig_trimmed(msg, sizeof msg, PQerrorMessage(c));
        mig_set_err(err, errsize, "could not set client_min_messages: %s", msg);
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

int mig_run_init(mig_run *run, PGconn *conn, const of_migration_set *set, FILE *out, char *err,
                 size_t errsize)
{
    memset(run, 0, sizeof *run);
    if (err != NULL && errsize > 0)
        err[0] = '\0';
    if (conn == NULL || set == NULL) {
        mig_set_err(err, errsize, "could not run migrations: missing argument");
        return OF_MIGRATE_EARG;
    }
    run->conn = conn;
    run->set = set;
    run->out = out != NULL ? out : stdout;
    run->err = err;
    run->errsize = errsize;
    run->files = calloc(set->count > 0 ? set->count : 1, sizeof *run->files);
    if (run->files == NULL) {
        mig_set_err(err, errsize, "could not run migrations: out of memory");
        return OF_MIGRATE_ENOMEM;
    }
    return OF_MIGRATE_OK;
}

void mig_run_free(mig_run *run)
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
int mig_pq_fail(mig_run *run, const PGresult *res, const char *what)
{
    char msg[1024];
    const char *primary = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *detail = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
    mig_trimmed(msg, sizeof msg, primary != NULL ? primary : PQerrorMessage(run->conn));
    if (detail != NULL)
        mig_set_err(run->err, run->errsize, "could not %s: %s (%s)", what, msg, detail);
    else
        mig_set_err(run->err, run->errsize, "could not %s: %s", what, msg);
    return PQstatus(run->conn) == CONNECTION_BAD ? OF_MIGRATE_ECONNECT : OF_MIGRATE_ESQL;
}

/* Runs a statement without parameters that must succeed. */
int mig_exec_simple(mig_run *run, const char *sql, const char *what)
{
    int result = OF_MIGRATE_OK;
    PGresult *res = PQexec(run->conn, sql);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        result = mig_pq_fail(run, res, what);
    PQclear(res);
    return result;
}

/* Rolls back an open transaction after a failure; errors are ignored because
 * the failure being reported matters more. */
void mig_rollback_quietly(mig_run *run)
{
    PGTransactionStatusType ts = PQtransactionStatus(run->conn);
    if (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR)
        PQclear(PQexec(run->conn, "rollback"));
}

int mig_lock_migrations(mig_run *run)
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
        result = mig_pq_fail(run, res, "take the migration lock");
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
            result = mig_pq_fail(run, res, "take the migration lock");
            goto out;
        }
    }
    run->locked = true;
    of_log_debug("migrate: holding advisory lock %s", key);
out:
    PQclear(res);
    return result;
}

void mig_unlock_migrations(mig_run *run)
{
    char key[32];
    const char *values[1] = {key};
    const Oid types[1] = {INT8_OID};
    if (!run->locked || PQstatus(run->conn) != CONNECTION_OK)
        return;
    mig_rollback_quietly(run);
    snprintf(key, sizeof key, "%" PRId64, (int64_t)OF_MIGRATE_LOCK_KEY);
    PQclear(
        PQexecParams(run->conn, "select pg_advisory_unlock($1)", 1, types, values, NULL, NULL, 0));
    run->locked = false;
}

int mig_table_exists(mig_run *run, bool *exists)
{
    int result = OF_MIGRATE_OK;
    PGresult *res = PQexec(run->conn, "select to_regclass('schema_migrations') is not null");
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        result = mig_pq_fail(run, res, "look for table \"schema_migrations\"");
        goto out;
    }
    *exists = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
out:
    PQclear(res);
    return result;
}

/* Creates the bookkeeping table when absent. Called with the lock held, so
 * two migrators cannot race on the CREATE. */
int mig_ensure_table(mig_run *run)
{
    bool exists = false;
    int result = mig_table_exists(run, &exists);
    if (result != OF_MIGRATE_OK || exists)
        return result;
    result = mig_exec_simple(run,
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
int mig_load_applied(mig_run *run)
{
    int result = OF_MIGRATE_OK;
    PGresult *res = NULL;
    bool exists = false;
    int rows;

    result = mig_table_exists(run, &exists);
    if (result != OF_MIGRATE_OK || !exists)
        goto out;
    res = PQexec(run->conn, "select version, name, checksum,"
                            " to_char(applied_at at time zone 'UTC',"
                            " 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
                            " from schema_migrations order by version");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        result = mig_pq_fail(run, res, "read table \"schema_migrations\"");
        goto out;
    }
    rows = PQntuples(res);
    run->applied = calloc(rows > 0 ? (size_t)rows : 1, sizeof *run->applied);
    if (run->applied == NULL) {
        mig_set_err(run->err, run->errsize, "could not read schema_migrations: out of memory");
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
            mig_set_err(run->err, run->errsize, "could not read schema_migrations: out of memory");
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
int mig_read_sql_file(const char *path, char **sql, size_t *len, char *err, size_t errsize)
{
    int result = OF_MIGRATE_OK;
    FILE *f = NULL;
    char *buf = NULL;
    long size;

    *sql = NULL;
    *len = 0;
    f = fopen(path, "rb");
    if (f == NULL) {
        mig_set_err(err, errsize, "could not open \"%s\": %s", path, strerror(errno));
        result = OF_MIGRATE_EFILES;
        goto out;
    }
    size = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0) {
        mig_set_err(err, errsize, "could not read \"%s\": %s", path, strerror(errno));
        result = OF_MIGRATE_EFILES;
        goto out;
    }
    if (size > MAX_FILE_BYTES) {
        mig_set_err(err, errsize, "could not read \"%s\": larger than %ld bytes", path,
                    MAX_FILE_BYTES);
        result = OF_MIGRATE_EFILES;
        goto out;
    }
    buf = malloc((size_t)size + 1);
    if (buf == NULL) {
        mig_set_err(err, errsize, "could not read \"%s\": out of memory", path);
        result = OF_MIGRATE_ENOMEM;
        goto out;
    }
    if (fread(buf, 1, (size_t)size, f) != (size_t)size) {
        mig_set_err(err, errsize, "could not read \"%s\": short read", path);
        result = OF_MIGRATE_EFILES;
        goto out;
    }
    buf[size] = '\0';
    if (memchr(buf, '\0', (size_t)size) != NULL) {
        mig_set_err(err, errsize, "could not use \"%s\": it contains a NUL byte", path);
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
int mig_checksum_of(mig_run *run, const char *data, size_t len, const char *path,
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
        result = mig_pq_fail(run, res, what);
        goto out;
    }
    memcpy(out, PQgetvalue(res, 0, 0), CHECKSUM_LEN + 1);
out:
    PQclear(res);
    return result;
}

/* Reads and checksums the up files: all of them (up needs the pending ones'
 * contents too) or only the applied ones. */
int mig_prepare_files(mig_run *run, bool all)
{
    int result = OF_MIGRATE_OK;
    char *path = NULL;
    for (size_t i = 0; i < run->set->count; i++) {
        file_state *fs = &run->files[i];
        if (!all && fs->applied == NULL)
            continue;
        path = mig_join_path(run->set->dir, run->set->items[i].up_file);
        if (path == NULL) {
            mig_set_err(run->err, run->errsize, "could not read migrations: out of memory");
            result = OF_MIGRATE_ENOMEM;
            goto out;
        }
        result = mig_read_sql_file(path, &fs->sql, &fs->len, run->err, run->errsize);
        if (result != OF_MIGRATE_OK)
            goto out;
        result = mig_checksum_of(run, fs->sql, fs->len, path, fs->checksum);
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
int mig_check_applied(mig_run *run)
{
    int problems = 0;
    if (run->err != NULL && run->errsize > 0)
        run->err[0] = '\0';
    for (size_t j = 0; j < run->n_applied; j++) {
        const applied_row *row = &run->applied[j];
        const of_migration *m = of_migration_set_find(run->set, row->version);
        if (m == NULL) {
            mig_add_err(run->err, run->errsize,
                        "applied migration version %" PRId64 " (\"%s\") has no up file in \"%s\"",
                        row->version, row->name, run->set->dir);
            problems++;
            continue;
        }
        const file_state *fs = &run->files[m - run->set->items];
        if (strcmp(fs->checksum, row->checksum) != 0) {
            mig_add_err(run->err, run->errsize,
                        "applied migration \"%s/%s\" (version %" PRId64 ") has changed: checksum "
                        "in schema_migrations %s, file checksum %s",
                        run->set->dir, m->up_file, row->version, row->checksum, fs->checksum);
            problems++;
        }
    }
    if (problems == 0)
        return OF_MIGRATE_OK;
    mig_add_err(run->err, run->errsize,
                "applied migrations must not change: restore the file, or put the change in a new "
                "migration");
    return OF_MIGRATE_ECHANGED;
}

int64_t mig_current_version(const mig_run *run)
{
    return run->n_applied > 0 ? run->applied[run->n_applied - 1].version : 0;
}

/* Line of the 1-based character position PostgreSQL reported, counting
 * UTF-8 characters (positions are in characters, not bytes). */
long mig_line_of_position(const char *sql, size_t len, const char *position)
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

int64_t mig_elapsed_ms(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (int64_t)(t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

/* Runs one migration file and its bookkeeping in one transaction: the file
 * goes through PQexec (simple query protocol, so it may hold many
 * statements), then schema_migrations gets its row (up) or loses it (down). */
