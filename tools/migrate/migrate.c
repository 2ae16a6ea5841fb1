/* migrate.c: applies or reverts versioned SQL migrations (up, down, status, verify). */
#include "migrate_internal.h"

static int apply_one(mig_run *run, const of_migration *m, const char *sql, size_t len,
                     const char *checksum, bool up)
{
    int result = OF_MIGRATE_OK;
    PGresult *res = NULL;
    char *path = mig_join_path(run->set->dir, up ? m->up_file : m->down_file);
    char version[32], ms_text[32];
    struct timespec t0;
    int64_t ms;
    ExecStatusType st;

    if (path == NULL) {
        mig_set_err(run->err, run->errsize, "could not apply migrations: out of memory");
        return OF_MIGRATE_ENOMEM;
    }
    snprintf(version, sizeof version, "%" PRId64, m->version);
    of_log_debug("migrate: running \"%s\"", path);
    result = mig_exec_simple(run, "begin", "begin a transaction");
    if (result != OF_MIGRATE_OK)
        goto out;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    res = PQexec(run->conn, sql);
    st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY) {
        char what[600];
        long line =
            mig_line_of_position(sql, len, PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION));
        if (line > 0)
            snprintf(what, sizeof what, "apply \"%s\" (version %s): line %ld", path, version, line);
        else
            snprintf(what, sizeof what, "apply \"%s\" (version %s)", path, version);
        result = mig_pq_fail(run, res, what);
        goto out;
    }
    PQclear(res);
    res = NULL;
    /* A COMMIT or ROLLBACK inside the file would detach its statements from
     * the bookkeeping row; catch it instead of recording a half truth. */
    if (PQtransactionStatus(run->conn) != PQTRANS_INTRANS) {
        mig_set_err(run->err, run->errsize,
                    "could not apply \"%s\" (version %s): the file ended the transaction itself; "
                    "migration files must not contain BEGIN, COMMIT or ROLLBACK (check the schema "
                    "by hand: its statements may be committed without a schema_migrations row)",
                    path, version);
        result = OF_MIGRATE_ESQL;
        goto out;
    }
    ms = mig_elapsed_ms(&t0);
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
            result = mig_pq_fail(run, res, "record the migration in \"schema_migrations\"");
            goto out;
        }
    } else {
        const char *values[1] = {version};
        const Oid types[1] = {INT8_OID};
        res = PQexecParams(run->conn, "delete from schema_migrations where version = $1", 1, types,
                           values, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_COMMAND_OK || strcmp(PQcmdTuples(res), "1") != 0) {
            result = mig_pq_fail(run, res, "remove the migration from \"schema_migrations\"");
            goto out;
        }
    }
    PQclear(res);
    res = NULL;
    result = mig_exec_simple(run, "commit", "commit the migration");
    if (result != OF_MIGRATE_OK)
        goto out;
    fprintf(run->out, "%s %" PRId64 " %s in %" PRId64 " ms\n", up ? "applied" : "reverted",
            m->version, m->name, ms);
    fflush(run->out);
out:
    if (result != OF_MIGRATE_OK)
        mig_rollback_quietly(run);
    PQclear(res);
    free(path);
    return result;
}

int of_migrate_up(PGconn *conn, const of_migration_set *set, int64_t to, FILE *out, char *err,
                  size_t errsize)
{
    mig_run run;
    int result = mig_run_init(&run, conn, set, out, err, errsize);
    int64_t version;
    size_t applied_now = 0;

    if (result != OF_MIGRATE_OK)
        goto out;
    result = mig_lock_migrations(&run);
    if (result != OF_MIGRATE_OK)
        goto out;
    result = mig_ensure_table(&run);
    if (result != OF_MIGRATE_OK)
        goto out;
    result = mig_load_applied(&run);
    if (result != OF_MIGRATE_OK)
        goto out;
    result = mig_prepare_files(&run, true);
    if (result != OF_MIGRATE_OK)
        goto out;
    result = mig_check_applied(&run);
    if (result != OF_MIGRATE_OK)
        goto out;
    version = mig_current_version(&run);
    /* A pending version below the newest applied one usually comes from a
     * merge; applying it out of order could depend on tables a later version
     * dropped, so ask for a renumbering instead. */
    for (size_t i = 0; i < set->count; i++) {
        if (run.files[i].applied == NULL && set->items[i].version < version) {
            mig_set_err(err, errsize,
                        "pending migration \"%s/%s\" (version %" PRId64
                        ") is older than the newest "
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
    mig_unlock_migrations(&run);
    mig_run_free(&run);
    return result;
}

int of_migrate_down(PGconn *conn, const of_migration_set *set, int64_t to, FILE *out, char *err,
                    size_t errsize)
{
    mig_run run;
    int result = mig_run_init(&run, conn, set, out, err, errsize);
    char *path = NULL, *sql = NULL;
    size_t len = 0, reverted = 0;

    if (result != OF_MIGRATE_OK)
        goto out;
    if (to < 0) {
        mig_set_err(err, errsize,
                    "could not revert: down needs an explicit target version (0 "
                    "reverts everything)");
        result = OF_MIGRATE_EARG;
        goto out;
    }
    result = mig_lock_migrations(&run);
    if (result != OF_MIGRATE_OK)
        goto out;
    result = mig_ensure_table(&run);
    if (result != OF_MIGRATE_OK)
        goto out;
    result = mig_load_applied(&run);
    if (result != OF_MIGRATE_OK)
        goto out;
    result = mig_prepare_files(&run, false);
    if (result != OF_MIGRATE_OK)
        goto out;
    result = mig_check_applied(&run);
    if (result != OF_MIGRATE_OK)
        goto out;
    /* Every version to revert needs a down file; check them all before the
     * first one runs so a missing file does not leave us half way. */
    for (size_t j = run.n_applied; j-- > 0;) {
        const of_migration *m = of_migration_set_find(set, run.applied[j].version);
        if (run.applied[j].version <= to)
            break;
        if (m->down_file == NULL) {
            mig_set_err(err, errsize,
                        "could not revert version %" PRId64 ": \"%s\" has no \"%" PRId64 "_%s%s\" "
                        "(nothing was reverted)",
                        m->version, set->dir, m->version, m->name, MIG_DOWN_SUFFIX);
            result = OF_MIGRATE_EFILES;
            goto out;
        }
    }
    for (size_t j = run.n_applied; j-- > 0;) {
        const of_migration *m = of_migration_set_find(set, run.applied[j].version);
        if (run.applied[j].version <= to)
            break;
        path = mig_join_path(set->dir, m->down_file);
        if (path == NULL) {
            mig_set_err(err, errsize, "could not revert: out of memory");
            result = OF_MIGRATE_ENOMEM;
            goto out;
        }
        result = mig_read_sql_file(path, &sql, &len, err, errsize);
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
    mig_unlock_migrations(&run);
    mig_run_free(&run);
    return result;
}

int of_migrate_status(PGconn *conn, const of_migration_set *set, FILE *out, char *err,
                      size_t errsize)
{
    mig_run run;
    int result = mig_run_init(&run, conn, set, out, err, errsize);
    size_t i = 0, j = 0, pending = 0, bad = 0;

    if (result != OF_MIGRATE_OK)
        goto out;
    result = mig_load_applied(&run);
    if (result != OF_MIGRATE_OK)
        goto out;
    result = mig_prepare_files(&run, false);
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
            mig_current_version(&run), run.n_applied, pending);
    if (bad > 0)
        fprintf(run.out, ", %zu changed or missing (see orderctl migrate verify)", bad);
    fprintf(run.out, "\n");
out:
    mig_run_free(&run);
    return result;
}

int of_migrate_verify(PGconn *conn, const of_migration_set *set, FILE *out, char *err,
                      size_t errsize)
{
    mig_run run;
    int result = mig_run_init(&run, conn, set, out, err, errsize);

    if (result != OF_MIGRATE_OK)
        goto out;
    result = mig_load_applied(&run);
    if (result != OF_MIGRATE_OK)
        goto out;
    result = mig_prepare_files(&run, false);
    if (result != OF_MIGRATE_OK)
        goto out;
    result = mig_check_applied(&run);
    if (result != OF_MIGRATE_OK)
        goto out;
    fprintf(run.out,
            "ok: %zu applied migrations match their files in \"%s\", schema at version "
            "%" PRId64 "\n",
            run.n_applied, set->dir, mig_current_version(&run));
out:
    mig_run_free(&run);
    return result;
}
