/* main.c: orderctl, the operator CLI: dispatches to one subcommand per verb. */
#include "orderctl.h"

#include <stdio.h>
#include <string.h>
#include <sysexits.h>

/* Every subcommand, in the order --help lists them. New verbs (submit,
 * describe, history, dlq, graph, ...) are one line here and one cmd_<name>.c. */
static const orderctl_command commands[] = {
    {"migrate", orderctl_migrate, "apply, revert, list or verify the database schema migrations"},
    {"topics", orderctl_topics, "create the contract's Kafka topics and their dead-letter topics"},
    {"graph", orderctl_graph, "print a machine's state diagram (Mermaid or Graphviz DOT)"},
};

static void print_usage(FILE *out)
{
    fprintf(out, "usage: orderctl <command> [options]\n"
                 "       orderctl <command> --help   settings of one command\n"
                 "       orderctl --version\n"
                 "\nCommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].help);
    fprintf(out,
            "\nExit codes (sysexits.h): 0 ok, %d bad usage, %d bad data (changed "
            "migration), %d PostgreSQL unavailable, %d internal error, %d bad "
            "configuration\n",
            EX_USAGE, EX_DATAERR, EX_UNAVAILABLE, EX_SOFTWARE, EX_CONFIG);
}

int main(int argc, char **argv)
{
    const char *verb = argc > 1 ? argv[1] : NULL;

    if (verb == NULL) {
        print_usage(stderr);
        return EX_USAGE;
    }
    if (strcmp(verb, "--help") == 0 || strcmp(verb, "-h") == 0 || strcmp(verb, "help") == 0) {
        print_usage(stdout);
        return EX_OK;
    }
    if (strcmp(verb, "--version") == 0) {
        printf("orderctl %s\n", ORDERFLOW_VERSION);
        return EX_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(verb, commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    }
    fprintf(stderr, "orderctl: unknown command \"%s\"; see orderctl --help\n", verb);
    return EX_USAGE;
}
