/* failpoint.c: the armed failpoints of ORDERFLOW_FAILPOINTS (see failpoint.h). */
#include "orderflow/failpoint.h"

/* Keeps the file a translation unit when failpoints are compiled out. */
typedef int of_failpoint_unit_;

#ifdef ORDERFLOW_FAILPOINTS
#include "orderflow/log.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_POINTS 16

typedef struct point {
    char name[64]; /* the point's name */
    long fire_at;  /* the pass it fires on (1 = the first) */
    long passes;   /* passes so far */
} point;

static point points[MAX_POINTS];
static int n_points = -1; /* -1: the environment not read yet */

static void load(void)
{
    const char *env = getenv("ORDERFLOW_FAILPOINTS");
    n_points = 0;
    while (env != NULL && *env != '\0' && n_points < MAX_POINTS) {
        size_t len = strcspn(env, ",");
        point *p = &points[n_points];
        const char *at = memchr(env, '@', len);
        size_t name_len = at != NULL ? (size_t)(at - env) : len;
        if (name_len > 0 && name_len < sizeof p->name) {
            memcpy(p->name, env, name_len);
            p->name[name_len] = '\0';
            p->fire_at = at != NULL ? strtol(at + 1, NULL, 10) : 1;
            if (p->fire_at < 1)
                p->fire_at = 1;
            p->passes = 0;
            of_log_warn("failpoint \"%s\" armed (fires on pass %ld)", p->name, p->fire_at);
            n_points++;
        }
        env += len;
        if (*env == ',')
            env++;
    }
}

bool of_failpoint(const char *name)
{
    if (n_points < 0)
        load();
    for (int i = 0; i < n_points; i++) {
        if (strcmp(points[i].name, name) == 0 && ++points[i].passes == points[i].fire_at) {
            of_log_warn("failpoint \"%s\" fires", name);
            return true;
        }
    }
    return false;
}
#endif

#ifdef ORDERFLOW_FAILPOINTS
void of_failpoint_crash(const char *name)
{
    if (of_failpoint(name)) {
        fflush(stderr);
        raise(SIGKILL);
    }
}
#endif
