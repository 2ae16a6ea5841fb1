/* cmd_prune.c: orderctl prune: deletes the rows whose retention has passed, batch by batch, with
 * the very statements the workers' pruners run.
 *
 * The workers prune on their own every --prune-interval (common/src/prune.c).
 * This command is the same work done once, synchronously, for every worker's
 * rows at once: a Kubernetes CronJob, a first prune of a database that grew
 * before pruning existed, or a dry run to see what the retentions would take.
 * The targets and their statements are the runtime's (orderflow/prune.h)
 * and the domain's (domain/retention.h), the settings have the workers'
 * names, variables and defaults, so a retention means the same here and
 * there. Scoped tables (inbox, dead_letters) are pruned per worker that has
 * rows, each batch one statement and one transaction, until a batch comes
 * back short. It deletes, so it runs as the schema owner (like migrate):
 * the orderflow_orderctl role may not delete. */
#include "orderctl.h"

#include "domain/retention.h"
#include "orderflow/prune.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

typedef struct prune_settings {
    orderctl_common c;   /* database, Kafka (unused), topic prefix (unused), log level */
    of_prune_settings p; /* batch size and the runtime's retentions (no interval here) */
    int64_t deadlines;   /* retention of fired or cancelled deadlines */
    int dry_run;         /* count, delete nothing */
} prune_settings;

static const of_config_item items[] = {
    ORDERCTL_COMMON_ITEMS(prune_settings, c),
    OF_PRUNE_CONFIG(offsetof(prune_settings, p)),
    OF_RETENTION_DEADLINES_CONFIG(offsetof(prune_settings, deadlines)),
    {"dry-run", NULL, "dry-run", OF_CFG_BOOL, "false",
     "print how many rows each table would lose; delete nothing", offsetof(prune_settings, dry_run),
     0, -1},
};
#define N_ITEMS (sizeof items / sizeof items[0])

static const char summary[] =
    "       orderctl prune [--table T]... [--dry-run] [--retention-inbox 14d] ...\n"
    "Deletes rows whose retention has passed, as the workers' pruners do every\n"
    "--prune-interval, for every worker at once: inbox rows, published outbox rows, redriven\n"
    "dead letters (with their redrives), fired or cancelled deadlines and, with\n"
    "--retention-history, finished executions (with their history). Unpublished outbox rows,\n"
    "dead letters never redriven and pending deadlines are never deleted. --table (repeatable:\n"
    "inbox, outbox, dead_letters, executions, deadlines) limits it to those tables. Prints the\n"
    "rows deleted per table (--dry-run: the rows that would be). Runs as the schema owner.";

/* One table to prune: its target and retention (0: kept). */
typedef struct prune_table {
    const of_prune_target *t; /* statements */
    int64_t retention;        /* ms; 0 keeps the rows */
} prune_table;

/* Every table, in the order the workers prune them. */
static size_t all_tables(const prune_settings *s, prune_table *out)
{
    const prune_table tables[] = {
        {&of_prune_inbox, s->p.inbox},
        {&of_prune_outbox, s->p.outbox},
        {&of_prune_dead_letters, s->p.dead_letters},
        {&of_prune_executions, s->p.history},
        {&of_prune_deadlines, s->deadlines},
    };
    const size_t n = sizeof tables / sizeof tables[0];
    memcpy(out, tables, sizeof tables);
    return n;
}

/* A retention as the largest unit that divides it: "14d", "90m", "1500ms". */
static void format_ms(char *buf, size_t size, int64_t ms)
{
    static const struct {
        int64_t ms;
        const char *unit;
    } units[] = {{24LL * 3600 * 1000, "d"}, {3600 * 1000, "h"}, {60 * 1000, "m"}, {1000, "s"}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (ms % units[i].ms == 0) {
            snprintf(buf, size, "%" PRId64 "%s", ms / units[i].ms, units[i].unit);
            return;
        }
    }
    snprintf(buf, size, "%" PRId64 "ms", ms);
}

/* Rows of one scope (NULL when the target has none): counted, or deleted
 * batch after batch until a batch is not full. Adds them to *rows. */
static int prune_scope(PGconn *conn, const prune_table *pt, const char *scope,
                       const prune_settings *s, uint64_t *rows)
{
    char retention[24], batch[24];
    const char *values[3];
    PGresult *r = NULL;
    int64_t n;
    int code;

    snprintf(retention, sizeof retention, "%" PRId64, pt->retention);
    snprintf(batch, sizeof batch, "%" PRId64, s->p.batch);
    if (s->dry_run) {
        int k = of_prune_params(pt->t, scope, retention, NULL, values);
        code = orderctl_db_query(conn, pt->t->count_sql, k, values, &r);
        if (code == EX_OK)
            *rows += strtoull(PQgetvalue(r, 0, 0), NULL, 10);
        PQclear(r);
        return code;
    }
    do {
        int k = of_prune_params(pt->t, scope, retention, batch, values);
        code = orderctl_db_query(conn, pt->t->delete_sql, k, values, &r);
        n = code == EX_OK ? strtoll(PQcmdTuples(r), NULL, 10) : 0;
        *rows += (uint64_t)n;
        PQclear(r);
    } while (code == EX_OK && n >= s->p.batch);
    return code;
}

/* One table: every scope that has rows, or the whole table. */
static int prune_table_run(PGconn *conn, const prune_table *pt, const prune_settings *s,
                           uint64_t *rows)
{
    PGresult *scopes = NULL;
    int code;

    *rows = 0;
    if (pt->t->scopes_sql == NULL)
        return prune_scope(conn, pt, NULL, s, rows);
    code = orderctl_db_query(conn, pt->t->scopes_sql, 0, NULL, &scopes);
    for (int i = 0; code == EX_OK && i < PQntuples(scopes); i++)
        code = prune_scope(conn, pt, PQgetvalue(scopes, i, 0), s, rows);
    PQclear(scopes);
    return code;
}

/* Marks the tables --table names in selected; all when none is named.
 * Returns EX_OK or EX_USAGE (reported). */
static int select_tables(const prune_table *tables, size_t n, const char *const *names,
                         size_t n_names, bool *selected)
{
    for (size_t i = 0; i < n; i++)
        selected[i] = n_names == 0;
    for (size_t k = 0; k < n_names; k++) {
        bool known = false;
        for (size_t i = 0; i < n; i++) {
            if (strcmp(names[k], tables[i].t->table) == 0) {
                selected[i] = true;
                known = true;
            }
        }
        if (!known) {
            fprintf(stderr,
                    "orderctl: unknown table \"%s\" for --table: inbox, outbox, dead_letters, "
                    "executions or deadlines\n",
                    names[k]);
            return EX_USAGE;
        }
    }
    return EX_OK;
}

/* Prunes (or counts) the selected tables and prints one line each. */
static int run(PGconn *conn, const prune_settings *s, const prune_table *tables, size_t n,
               const bool *selected)
{
    printf("%-14s %-10s %s\n", "table", "retention", s->dry_run ? "would delete" : "deleted");
    for (size_t i = 0; i < n; i++) {
        char keep[32];
        uint64_t rows = 0;
        int code;
        if (!selected[i])
            continue;
        if (tables[i].retention == 0) {
            printf("%-14s %-10s -\n", tables[i].t->table, "forever");
            continue;
        }
        format_ms(keep, sizeof keep, tables[i].retention);
        code = prune_table_run(conn, &tables[i], s, &rows);
        if (code != EX_OK) {
            fprintf(stderr, "orderctl: could not prune \"%s\"%s\n", tables[i].t->table,
                    code == EX_SOFTWARE ? " (prune deletes: run it as the schema owner)" : "");
            return code;
        }
        printf("%-14s %-10s %" PRIu64 "\n", tables[i].t->table, keep, rows);
        fflush(stdout);
    }
    return EX_OK;
}

int orderctl_prune(int argc, char **argv)
{
    prune_settings s;
    prune_table tables[8];
    bool selected[8];
    const char **names = NULL;
    size_t n_names = 0, n;
    PGconn *conn = NULL;
    char err[160];
    int rest = 0, code;

    memset(&s, 0, sizeof s);
    code = orderctl_take_repeated(&argc, argv, "table", &names, &n_names);
    if (code != EX_OK)
        goto out_names;
    if (!orderctl_settings_load(items, N_ITEMS, &s, argc, argv, &rest, "orderctl prune", summary,
                                &code))
        goto out_names;
    code = orderctl_common_apply(&s.c);
    if (code != EX_OK)
        goto out;
    if (rest > 1) {
        fprintf(stderr, "orderctl: unexpected argument \"%s\"; see orderctl prune --help\n",
                argv[1]);
        code = EX_USAGE;
        goto out;
    }
    if (of_prune_settings_check(&s.p, err, sizeof err) != 0) {
        fprintf(stderr, "orderctl: %s\n", err);
        code = EX_USAGE;
        goto out;
    }
    n = all_tables(&s, tables);
    code = select_tables(tables, n, names, n_names, selected);
    if (code != EX_OK)
        goto out;
    code = orderctl_db_connect(s.c.database_url, &conn);
    if (code != EX_OK)
        goto out;
    code = run(conn, &s, tables, n, selected);
    PQfinish(conn);
out:
    of_config_free(items, N_ITEMS, &s);
out_names:
    free(names);
    return code;
}
