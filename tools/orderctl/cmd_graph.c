/* cmd_graph.c: orderctl graph, a machine's diagram drawn from the table the workers run. */
#include "orderctl.h"

#include "domain/order_machine.h"
#include "domain/return_machine.h"

#include "orderflow/config.h"
#include "orderflow/park.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

typedef struct graph_settings {
    char *format; /* "mermaid" or "dot" */
} graph_settings;

static const of_config_item items[] = {
    {"format", "ORDERCTL_GRAPH_FORMAT", "format", OF_CFG_STRING, "mermaid",
     "mermaid (for Markdown) or dot (for Graphviz)", offsetof(graph_settings, format), 0, -1},
};
#define N_ITEMS (sizeof items / sizeof items[0])

/* Machines by the names an operator knows: the entity or an execution. */
static const struct {
    const char *name;    /* as typed */
    const of_machine *m; /* table */
} machines[] = {
    {"order", &of_order_machine},         /* the order entity */
    {"OrderProcess", &of_order_machine},  /* its first execution */
    {"OrderUpdate", &of_order_machine},   /* its second execution */
    {"return", &of_return_machine},       /* the return entity */
    {"ReturnRefund", &of_return_machine}, /* its execution */
};

int orderctl_graph(int argc, char **argv)
{
    graph_settings s;
    int rest = 0, result = EX_USAGE;
    const of_machine *m = NULL;

    of_config_load_or_exit(items, N_ITEMS, &s, argc, argv, &rest, "orderctl graph",
                           "orderctl graph MACHINE [--format mermaid|dot]\n"
                           "Prints the state diagram of MACHINE (order, OrderProcess, OrderUpdate, "
                           "return, ReturnRefund, or parked-key: the lifecycle of a parked Kafka "
                           "key) from the transition table the workers run.");
    if (rest != 2) {
        fprintf(stderr, "orderctl: usage: orderctl graph MACHINE [--format mermaid|dot]\n");
        goto out;
    }
    for (size_t i = 0; i < sizeof machines / sizeof machines[0]; i++)
        if (strcmp(machines[i].name, argv[1]) == 0)
            m = machines[i].m;
    /* Not a machine of the domain: the runtime's lifecycle of a parked key (park.h). */
    bool parked_key = strcmp(argv[1], "parked-key") == 0;
    if (m == NULL && !parked_key) {
        fprintf(stderr, "orderctl: unknown machine \"%s\"\n", argv[1]);
        goto out;
    }
    if (strcmp(s.format, "dot") == 0 || strcmp(s.format, "mermaid") == 0) {
        of_render_format f = strcmp(s.format, "dot") == 0 ? OF_RENDER_DOT : OF_RENDER_MERMAID;
        if (parked_key)
            of_park_render(f, stdout);
        else
            of_machine_render(m, f, stdout);
    } else {
        fprintf(stderr, "orderctl: unknown format \"%s\"\n", s.format);
        goto out;
    }
    result = EX_OK;
out:
    of_config_free(items, N_ITEMS, &s);
    return result;
}
