/* db_internal.h: what db.c and db_pipeline.c share; not installed. */
#ifndef ORDERFLOW_DB_INTERNAL_H
#define ORDERFLOW_DB_INTERNAL_H

#include "orderflow/db.h"

/* Releases the results of p's last run. */
void of_db__clear_results(of_db_pipeline *p);
/* Appends one command (a statement by name, or ad hoc sql) with copies of its parameters. */
int of_db__add_cmd(of_db_pipeline *p, const char *stmt, const char *sql, int nparams,
                   const char *const *values, const int *lengths, const int *formats);

#endif
