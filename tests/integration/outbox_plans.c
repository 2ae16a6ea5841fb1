/* outbox_plans.c: which indexes can answer the relay's per-key probe.
 *
 * Every outbox statement (and the dead-letter insert, which writes an outbox
 * row) that asks "is an older (or a held) row of this key
 * pending?" does it once per row: topic and key equal, pending. That probe
 * must be answered by outbox_pending_key_idx (topic, key, seq) and by no other
 * index: an index whose predicate the probe implies but which is not keyed
 * lets the planner scan every pending row once per row (with stale statistics
 * it did, and a sweep took longer than its statement timeout; migration 0014).
 *
 * The table first gets the statistics that misled the planner: 20,000 rows,
 * all published, then VACUUM ANALYZE, so the pending indexes look empty while
 * the table is not (as after a burst, or a crash that reset the statistics).
 * Then, for each statement's generic plan, inside transactions that are
 * rolled back:
 *   1. the probe is an index scan of outbox_pending_key_idx with the row's
 *      topic and key as index conditions (a full scan of an index that looks
 *      empty, filtered by a join, is what the planner chose for a join);
 *   2. with outbox_pending_key_idx dropped and sequential and bitmap scans
 *      priced out, the probe is a sequential scan: no other index could have
 *      served it.
 * Prints one TAP line per check; exits 1 when one fails, 2 when it cannot
 * run. DATABASE_URL names a migrated database whose owner this connects as. */
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orderflow/dlq.h"
#include "orderflow/outbox.h"

/* The statements with a probe, and the alias the probe scans outbox under. */
static const struct {
    const char *name;
    const char *alias;
} probes[] = {
    {"of_outbox_insert", "p"}, {"of_outbox_insert_rows", "p"}, {"of_outbox_mark", "h"},
    {"of_outbox_claim", "p"},  {"of_dlq_insert", "p"},
};

static int failures;

static bool run(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        fprintf(stderr, "%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    return ok;
}

static const char *stmt_sql(const char *name)
{
    for (size_t i = 0; i < of_outbox_n_stmts; i++)
        if (strcmp(of_outbox_stmts[i].name, name) == 0)
            return of_outbox_stmts[i].sql;
    for (size_t i = 0; i < of_dlq_n_stmts; i++)
        if (strcmp(of_dlq_stmts[i].name, name) == 0)
            return of_dlq_stmts[i].sql;
    return NULL;
}

/* True when line is a scan node of outbox under alias ("... on outbox p"). */
static bool scans_alias(const char *line, const char *alias)
{
    char pat[32];
    snprintf(pat, sizeof pat, " on outbox %s", alias);
    const char *at = strstr(line, pat);
    if (at == NULL)
        return false;
    char after = at[strlen(pat)];
    return after == '\0' || after == ' ' || after == '\n';
}

/* True when the scan node at row of plan has an Index Cond on topic and key
 * (its detail lines come before the next node). */
static bool keyed_cond(const PGresult *plan, int row)
{
    for (int k = row + 1; k < PQntuples(plan); k++) {
        const char *line = PQgetvalue(plan, k, 0);
        if (strstr(line, "->") != NULL)
            return false;
        if (strstr(line, "Index Cond:") != NULL)
            return strstr(line, "topic = ") != NULL && strstr(line, "key = ") != NULL;
    }
    return false;
}

/* Checks the probe scans in the generic plan of statement i; keyed says
 * whether outbox_pending_key_idx exists. Returns false when it cannot run. */
static bool check(PGconn *c, size_t i, bool keyed)
{
    char stmt[64], explain[512];
    const char *sql = stmt_sql(probes[i].name);
    if (sql == NULL) {
        printf("not ok - %s: no such outbox statement\n", probes[i].name);
        failures++;
        return true;
    }
    snprintf(stmt, sizeof stmt, "plan_%zu_%d", i, keyed);
    PGresult *r = PQprepare(c, stmt, sql, 0, NULL);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!ok) {
        fprintf(stderr, "prepare %s: %s", probes[i].name, PQerrorMessage(c));
        return false;
    }
    r = PQdescribePrepared(c, stmt);
    int n = PQresultStatus(r) == PGRES_COMMAND_OK ? PQnparams(r) : -1;
    PQclear(r);
    if (n < 0)
        return false;
    /* The generic plan (plan_cache_mode), so the parameters' values do not matter. */
    size_t len = (size_t)snprintf(explain, sizeof explain, "explain (costs off) execute %s", stmt);
    for (int k = 0; k < n && len < sizeof explain; k++)
        len += (size_t)snprintf(explain + len, sizeof explain - len, "%snull", k ? ", " : "(");
    if (n > 0 && len < sizeof explain)
        snprintf(explain + len, sizeof explain - len, ")");
    r = PQexec(c, explain);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "%s: %s", explain, PQerrorMessage(c));
        PQclear(r);
        return false;
    }
    int seen = 0, wrong = 0;
    for (int row = 0; row < PQntuples(r); row++) {
        const char *line = PQgetvalue(r, row, 0);
        if (!scans_alias(line, probes[i].alias))
            continue;
        seen++;
        bool good = keyed ? strstr(line, "Scan using outbox_pending_key_idx on outbox") != NULL &&
                                keyed_cond(r, row)
                          : strstr(line, "Seq Scan on outbox") != NULL;
        if (!good) {
            wrong++;
            fprintf(stderr, "# %s:%s\n", probes[i].name, line);
        }
    }
    if (seen == 0 || wrong > 0) {
        failures++;
        printf("not ok - %s: the probe (outbox %s) %s", probes[i].name, probes[i].alias,
               seen == 0 ? "is not in the plan:\n" : "");
        if (seen > 0)
            printf("%s\n", keyed ? "is not an index scan of outbox_pending_key_idx by topic and key"
                                 : "uses another index when outbox_pending_key_idx is gone");
        if (seen == 0)
            for (int row = 0; row < PQntuples(r); row++)
                fprintf(stderr, "# %s\n", PQgetvalue(r, row, 0));
    } else {
        printf("ok - %s: the probe (outbox %s) %s\n", probes[i].name, probes[i].alias,
               keyed ? "is an index scan of outbox_pending_key_idx by topic and key"
                     : "has no other index: a sequential scan when outbox_pending_key_idx is gone");
    }
    PQclear(r);
    return true;
}

int main(void)
{
    const char *url = getenv("DATABASE_URL");
    PGconn *c = PQconnectdb(url != NULL ? url : "");
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "connect: %s", PQerrorMessage(c));
        PQfinish(c);
        return 2;
    }
    if (!run(c, "insert into outbox (id, topic, key, payload, published_at)"
                " select gen_random_uuid(), 'plans', convert_to(i::text, 'UTF8'), '\\x00', now()"
                " from generate_series(1, 20000) i") ||
        !run(c, "vacuum analyze outbox")) {
        PQfinish(c);
        return 2;
    }
    for (int keyed = 1; keyed >= 0; keyed--) {
        if (!run(c, "begin") ||
            (!keyed && (!run(c, "drop index outbox_pending_key_idx") ||
                        !run(c, "set local enable_seqscan = off") ||
                        !run(c, "set local enable_bitmapscan = off"))) ||
            !run(c, "set local plan_cache_mode = force_generic_plan")) {
            PQfinish(c);
            return 2;
        }
        for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
            if (!check(c, i, keyed)) {
                PQfinish(c);
                return 2;
            }
        }
        if (!run(c, "rollback") || !run(c, "deallocate all")) {
            PQfinish(c);
            return 2;
        }
    }
    run(c, "delete from outbox where topic = 'plans'");
    PQfinish(c);
    return failures > 0 ? 1 : 0;
}
