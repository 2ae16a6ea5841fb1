/* config.h: one table of settings per process, read from the environment and
 * overridden by command-line flags (12-factor).
 *
 * A process declares an array of of_config_item describing where each value
 * lands in its own settings struct (by offsetof). of_config_load() fills the
 * struct from defaults, then the environment, then argv; --help prints the
 * table. Strings in the struct are owned by the struct: release them with
 * of_config_free(). */
#ifndef ORDERFLOW_CONFIG_H
#define ORDERFLOW_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "orderflow/error.h"

typedef enum of_config_type {
    OF_CFG_STRING, /* char *, strdup'ed */
    OF_CFG_SECRET, /* char *, like STRING but masked when printed or logged */
    OF_CFG_INT,    /* int64_t, decimal */
    OF_CFG_BOOL,   /* int, true/false/1/0/yes/no/on/off */
    OF_CFG_MS,     /* int64_t milliseconds; accepts 250ms, 5s, 2m, 1h, 30d or a bare ms number */
} of_config_type;

typedef struct of_config_item {
    const char *name;    /* setting name, e.g. "database-url" */
    const char *env;     /* environment variable, e.g. "DATABASE_URL", or NULL */
    const char *flag;    /* long flag without dashes, e.g. "database-url", or NULL */
    of_config_type type; /* how the text is parsed */
    const char *def;     /* default as text, or NULL for "unset" (strings stay NULL) */
    const char *help;    /* one line of help */
    size_t offset;       /* offsetof(settings struct, field) */
    int64_t min, max;    /* inclusive bounds for INT and MS (ignored when min > max) */
} of_config_item;

/* Results of of_config_load(). */
#define OF_CONFIG_OK   0
#define OF_CONFIG_HELP 1         /* --help was given and printed; exit 0 */
#define OF_CONFIG_ERR  OF_EINVAL /* a value was bad; the reason was written to err */

/* Fills target from defaults, environment (getenv) and argv (--flag=value or
 * --flag value; booleans also as bare --flag). Arguments that are not flags are
 * left in place: *argc_rest receives how many remain in argv (argv is permuted
 * so they come first after argv[0]). On error writes a message naming the
 * setting to err (stderr if NULL). */
int of_config_load(const of_config_item *items, size_t n, void *target, int argc, char **argv,
                   int *argc_rest, FILE *err) __attribute__((warn_unused_result));

/* Prints usage and the table (name, env, flag, type, default, help). */
void of_config_print_help(FILE *out, const char *progname, const char *summary,
                          const of_config_item *items, size_t n);

/* A connection string fit for logs: in a URI the user info's password and the
 * values of the query parameters password and sslpassword become "****"; a
 * key=value string is masked whole. */
void of_config_mask_secret(char *dst, size_t size, const char *src);
/* Logs the effective configuration at info level, secrets masked. */
void of_config_log(const of_config_item *items, size_t n, const void *target);

/* Frees the strings the table placed in target. */
void of_config_free(const of_config_item *items, size_t n, void *target);

/* Helper for the runtime: load, or print help / the error and exit with
 * EX_OK / EX_CONFIG. Returns only on success. */
void of_config_load_or_exit(const of_config_item *items, size_t n, void *target, int argc,
                            char **argv, int *argc_rest, const char *progname, const char *summary);

#endif
