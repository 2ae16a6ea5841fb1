/* orderctl.h: the operator CLI's subcommand interface.
 *
 * Each subcommand is one function in its own cmd_<name>.c, listed in the
 * dispatch table in main.c. It receives argv starting at its own name
 * (argv[0] is "migrate"), parses its settings with orderflow/config.h, and
 * returns a sysexits.h code. Output for humans goes to stdout; failures are
 * plain "orderctl: could not ..." lines on stderr (a CLI's errors are read by
 * a person at a terminal, so they are not JSON log lines). Subcommands own
 * and free everything they allocate. */
#ifndef ORDERCTL_H
#define ORDERCTL_H

/* Runs a subcommand; returns the process exit code (sysexits.h). */
typedef int (*orderctl_fn)(int argc, char **argv);

/* One entry of the dispatch table. */
typedef struct orderctl_command {
    const char *name; /* subcommand as typed, e.g. "migrate" */
    orderctl_fn run;  /* its entry point */
    const char *help; /* one line for orderctl --help */
} orderctl_command;

/* orderctl migrate up|down|status|verify: the database schema (cmd_migrate.c). */
int orderctl_migrate(int argc, char **argv);
/* orderctl topics create: the contract's topics and DLQ topics (cmd_topics.c). */
int orderctl_topics(int argc, char **argv);
/* orderctl graph MACHINE: the machine's diagram from its transition table (cmd_graph.c). */
int orderctl_graph(int argc, char **argv);

#endif
