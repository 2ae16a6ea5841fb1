/* cmd_migrate.c: `orderctl migrate up|down|status|verify`, the schema
 * migrator on top of orderflow/migrate.h.
 *
 * Errors are plain "orderctl: could not ..." lines on stderr rather than
 * JSON log lines: a person runs this at a terminal or reads it in a deploy
 * log. The JSON logger (LOG_LEVEL=debug) adds connection and file details. */
#include "orderctl.h"

#include "orderflow/config.h"
#include "orderflow/log.h"
#include "migrate.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

/* Settings of `orderctl migrate`. */
typedef struct migrate_settings {
    char *database_url; /* libpq URI or key=value string */
    char *dir;          /* directory holding NNNN_name.{up,down}.sql */
    char *log_level;    /* debug, info, warn or error */
    int64_t to;         /* target version; -1 when not given */
} migrate_settings;

static const of_config_item migrate_items[] = {
    {"database-url", "DATABASE_URL", "database-url", OF_CFG_SECRET,
     "postgresql://orderflow@127.0.0.1:25432/orderflow", "PostgreSQL to migrate (libpq URI)",
     offsetof(migrate_settings, database_url), 0, -1},
    {"migrations-dir", "ORDERFLOW_MIGRATIONS_DIR", "dir", OF_CFG_STRING, "migrations",
     "directory with NNNN_name.up.sql / NNNN_name.down.sql files", offsetof(migrate_settings, dir),
     0, -1},
    {"log-level", "LOG_LEVEL", "log-level", OF_CFG_STRING, "info",
     "debug, info, warn or error (JSON diagnostics on stderr)",
     offsetof(migrate_settings, log_level), 0, -1},
    {"to", NULL, "to", OF_CFG_INT, "-1",
     "target version: up stops there (-1: latest); down needs it (0: revert all)",
     offsetof(migrate_settings, to), -1, INT64_MAX},
};
#define N_MIGRATE_ITEMS (sizeof migrate_items / sizeof migrate_items[0])

static const char migrate_summary[] =
    "       orderctl migrate up|down|status|verify [--to N] [options]\n"
    "\nActions (exactly one):\n"
    "  up       apply pending migrations in order, each in its own transaction\n"
    "  down     revert applied migrations above --to N, newest first (--to is required)\n"
    "  status   list versions: applied/pending, checksum ok/CHANGED/MISSING, applied_at\n"
    "  verify   check applied migrations' checksums against their files\n"
    "up and down hold a PostgreSQL advisory lock for the whole run and refuse to run when\n"
    "an applied file changed or is missing (exit 65). Exit codes: 64 bad usage, 65 changed\n"
    "or missing migration, 69 PostgreSQL unavailable, 70 a statement failed, 78 bad\n"
    "configuration or migrations directory.";

/* sysexits.h code for a migrate.h result. */
static int exit_code(int result)
{
    switch (result) {
    case OF_MIGRATE_OK:
        return EX_OK;
    case OF_MIGRATE_ECHANGED:
        return EX_DATAERR;
    case OF_MIGRATE_ECONNECT:
        return EX_UNAVAILABLE;
    case OF_MIGRATE_EFILES:
        return EX_CONFIG;
    case OF_MIGRATE_EARG:
        return EX_USAGE;
    default:
        return EX_SOFTWARE;
    }
}

/* Prints each line of a (possibly multi-line) error after "orderctl: ". */
static void print_error(const char *err)
{
    const char *line = err;
    while (line != NULL && *line != '\0') {
        const char *nl = strchr(line, '\n');
        int len = nl != NULL ? (int)(nl - line) : (int)strlen(line);
        fprintf(stderr, "orderctl: %.*s\n", len, line);
        line = nl != NULL ? nl + 1 : NULL;
    }
}

int orderctl_migrate(int argc, char **argv)
{
    migrate_settings s;
    of_migration_set set = {0};
    PGconn *conn = NULL;
    char err[OF_MIGRATE_ERRSIZE] = "";
    int rest = 0, result = OF_MIGRATE_OK, code = EX_OK;
    const char *action;
    of_log_level level;

    memset(&s, 0, sizeof s);
    of_log_init("orderctl");
    of_config_load_or_exit(migrate_items, N_MIGRATE_ITEMS, &s, argc, argv, &rest,
                           "orderctl migrate", migrate_summary);
    if (of_log_level_parse(s.log_level, &level) != 0) {
        fprintf(stderr, "orderctl: invalid log-level \"%s\": use debug, info, warn or error\n",
                s.log_level);
        code = EX_CONFIG;
        goto out;
    }
    of_log_set_level(level);
    if (level == OF_LOG_DEBUG)
        of_config_log(migrate_items, N_MIGRATE_ITEMS, &s);

    /* After of_config_load, argv[1 .. rest-1] are the non-flag arguments. */
    if (rest != 2) {
        fprintf(stderr, "orderctl: migrate needs exactly one action (up, down, status or "
                        "verify); see orderctl migrate --help\n");
        code = EX_USAGE;
        goto out;
    }
    action = argv[1];
    if (strcmp(action, "up") != 0 && strcmp(action, "down") != 0 && strcmp(action, "status") != 0 &&
        strcmp(action, "verify") != 0) {
        fprintf(stderr, "orderctl: unknown migrate action \"%s\"; see orderctl migrate --help\n",
                action);
        code = EX_USAGE;
        goto out;
    }
    if (strcmp(action, "down") == 0 && s.to < 0) {
        fprintf(stderr, "orderctl: migrate down needs --to N (0 reverts every migration)\n");
        code = EX_USAGE;
        goto out;
    }
    if ((strcmp(action, "status") == 0 || strcmp(action, "verify") == 0) && s.to >= 0) {
        fprintf(stderr, "orderctl: --to applies to up and down only\n");
        code = EX_USAGE;
        goto out;
    }

    result = of_migration_set_load(&set, s.dir, err, sizeof err);
    if (result != OF_MIGRATE_OK) {
        print_error(err);
        code = exit_code(result);
        goto out;
    }
    result = of_migrate_connect(s.database_url, &conn, err, sizeof err);
    if (result != OF_MIGRATE_OK) {
        print_error(err);
        /* A URL libpq cannot parse is a configuration error, not bad usage. */
        code = result == OF_MIGRATE_EARG ? EX_CONFIG : exit_code(result);
        goto out;
    }

    if (strcmp(action, "up") == 0)
        result = of_migrate_up(conn, &set, s.to, stdout, err, sizeof err);
    else if (strcmp(action, "down") == 0)
        result = of_migrate_down(conn, &set, s.to, stdout, err, sizeof err);
    else if (strcmp(action, "status") == 0)
        result = of_migrate_status(conn, &set, stdout, err, sizeof err);
    else
        result = of_migrate_verify(conn, &set, stdout, err, sizeof err);
    if (result != OF_MIGRATE_OK) {
        print_error(err);
        code = exit_code(result);
    }
out:
    PQfinish(conn);
    of_migration_set_free(&set);
    of_config_free(migrate_items, N_MIGRATE_ITEMS, &s);
    return code;
}
