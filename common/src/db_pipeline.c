/* db_pipeline.c: building pipelines (commands and their copied parameters), reading their results,
 * and the helpers for parameters and SQLSTATEs. */
#include "db_internal.h"

#include <stdlib.h>
#include <string.h>

/* Commands and their parameters. */

void of_db_pipeline_init(of_db_pipeline *p)
{
    memset(p, 0, sizeof *p);
    p->failed_index = -1;
}

static void free_cmd(of_db_cmd *c)
{
    for (int i = 0; i < c->nparams; i++)
        free(c->values[i]);
    free(c->values);
    free(c->lengths);
    free(c->formats);
    free(c->sql);
    free(c->stmt);
    memset(c, 0, sizeof *c);
}

void of_db__clear_results(of_db_pipeline *p)
{
    if (p->results == NULL)
        return;
    for (size_t i = 0; i < p->n; i++) {
        PQclear(p->results[i]);
        p->results[i] = NULL;
    }
}

void of_db_pipeline_reset(of_db_pipeline *p)
{
    of_db__clear_results(p);
    free(p->results);
    p->results = NULL;
    for (size_t i = 0; i < p->n; i++)
        free_cmd(&p->cmds[i]);
    p->n = 0;
    p->status = 0;
    p->failed_index = -1;
    p->sqlstate[0] = '\0';
    p->error[0] = '\0';
    p->cur = 0;
    p->cur_has_result = false;
}

void of_db_pipeline_free(of_db_pipeline *p)
{
    of_db_pipeline_reset(p);
    free(p->cmds);
    p->cmds = NULL;
    p->cap = 0;
}

PGresult *of_db_pipeline_result(const of_db_pipeline *p, size_t i)
{
    if (p->results == NULL || i >= p->n)
        return NULL;
    return p->results[i];
}

int of_db__add_cmd(of_db_pipeline *p, const char *stmt, const char *sql, int nparams,
                   const char *const *values, const int *lengths, const int *formats)
{
    of_db_cmd *c;
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        of_db_cmd *cmds = realloc(p->cmds, cap * sizeof *cmds);
        if (cmds == NULL)
            return OF_ENOMEM;
        p->cmds = cmds;
        p->cap = cap;
    }
    c = &p->cmds[p->n];
    memset(c, 0, sizeof *c);
    c->stmt = stmt != NULL ? strdup(stmt) : NULL;
    c->sql = sql != NULL ? strdup(sql) : NULL;
    if ((stmt != NULL && c->stmt == NULL) || (sql != NULL && c->sql == NULL)) {
        free(c->stmt);
        free(c->sql);
        memset(c, 0, sizeof *c);
        return OF_ENOMEM;
    }
    if (nparams > 0) {
        c->values = calloc((size_t)nparams, sizeof *c->values);
        c->lengths = calloc((size_t)nparams, sizeof *c->lengths);
        c->formats = calloc((size_t)nparams, sizeof *c->formats);
        if (c->values == NULL || c->lengths == NULL || c->formats == NULL)
            goto nomem;
        c->nparams = nparams;
        for (int i = 0; i < nparams; i++) {
            int binary = formats != NULL && formats[i] == 1;
            size_t len;
            if (values[i] == NULL)
                continue;
            len = binary ? (size_t)lengths[i] : strlen(values[i]);
            c->values[i] = malloc(len + 1);
            if (c->values[i] == NULL)
                goto nomem;
            memcpy(c->values[i], values[i], len);
            c->values[i][len] = '\0';
            c->lengths[i] = (int)len;
            c->formats[i] = binary;
        }
    }
    p->n++;
    return OF_OK;
nomem:
    free_cmd(c);
    return OF_ENOMEM;
}

int of_db_pipeline_add(of_db_pipeline *p, const char *stmt, int nparams, const char *const *values)
{
    return of_db__add_cmd(p, stmt, NULL, nparams, values, NULL, NULL);
}

int of_db_pipeline_add_bin(of_db_pipeline *p, const char *stmt, int nparams,
                           const char *const *values, const int *lengths, const int *formats)
{
    return of_db__add_cmd(p, stmt, NULL, nparams, values, lengths, formats);
}

int of_db_pipeline_add_sql(of_db_pipeline *p, const char *sql, int nparams,
                           const char *const *values)
{
    return of_db__add_cmd(p, NULL, sql, nparams, values, NULL, NULL);
}

bool of_db_sqlstate_transient(const char *s)
{
    if (s == NULL || strlen(s) != 5)
        return false;
    return strncmp(s, "08", 2) == 0 || strcmp(s, "40001") == 0 || strcmp(s, "40P01") == 0 ||
           strncmp(s, "53", 2) == 0 || strcmp(s, "55P03") == 0 || strcmp(s, "57014") == 0 ||
           strcmp(s, "57P01") == 0 || strcmp(s, "57P02") == 0 || strcmp(s, "57P03") == 0;
}

char *of_db_text_array(const char *const *items, size_t n)
{
    size_t size = 3;
    for (size_t i = 0; i < n; i++)
        size += 5 + (items[i] != NULL ? 2 * strlen(items[i]) : 0);
    char *out = malloc(size);
    if (out == NULL)
        return NULL;
    char *w = out;
    *w++ = '{';
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            *w++ = ',';
        if (items[i] == NULL) {
            memcpy(w, "NULL", 4);
            w += 4;
            continue;
        }
        *w++ = '"';
        for (const char *r = items[i]; *r != '\0'; r++) {
            if (*r == '"' || *r == '\\')
                *w++ = '\\';
            *w++ = *r;
        }
        *w++ = '"';
    }
    *w++ = '}';
    *w = '\0';
    return out;
}

int of_db_pipeline_add_list(of_db_pipeline *p, const char *stmt, const char *const *items, size_t n,
                            const char *extra)
{
    char *array = of_db_text_array(items, n);
    int rc;
    if (array == NULL)
        return OF_ENOMEM;
    const char *values[2] = {array, extra};
    rc = of_db_pipeline_add(p, stmt, extra != NULL ? 2 : 1, values);
    free(array);
    return rc;
}
