/* db_rows.c: row sets, i.e. many rows as one statement with one array parameter per column. */
#include "orderflow/db.h"

#include <stdlib.h>
#include <string.h>

int of_db_rows_init(of_db_rows *r, const char *stmt, int n_cols)
{
    memset(r, 0, sizeof *r);
    r->stmt = stmt;
    r->n_cols = n_cols;
    if (n_cols < 1 || n_cols > 64)
        return OF_EINVAL;
    r->cols = calloc((size_t)n_cols, sizeof *r->cols);
    return r->cols != NULL ? OF_OK : OF_ENOMEM;
}

/* Room for need more bytes (and a closing "}" and NUL) in c. */
static bool reserve(of_db_col *c, size_t need)
{
    if (c->len + need + 2 <= c->cap)
        return true;
    size_t cap = c->cap ? c->cap : 256;
    while (cap < c->len + need + 2)
        cap *= 2;
    char *s = realloc(c->s, cap);
    if (s == NULL)
        return false;
    c->s = s;
    c->cap = cap;
    return true;
}

/* Appends one element: "," unless first, then NULL or the quoted, escaped value. */
static bool append(of_db_col *c, const char *v, bool first)
{
    size_t need = 1 + (v != NULL ? 2 + 2 * strlen(v) : 4);
    if (!reserve(c, need + 1))
        return false;
    char *w = c->s + c->len;
    *w++ = first ? '{' : ',';
    if (v == NULL) {
        memcpy(w, "NULL", 4);
        w += 4;
    } else {
        *w++ = '"';
        for (const char *p = v; *p != '\0'; p++) {
            if (*p == '"' || *p == '\\')
                *w++ = '\\';
            *w++ = *p;
        }
        *w++ = '"';
    }
    c->len = (size_t)(w - c->s);
    return true;
}

int of_db_rows_add(of_db_rows *r, const char *const *values)
{
    size_t before[64];
    if (r->n_cols > (int)(sizeof before / sizeof before[0]))
        return OF_EINVAL;
    for (int i = 0; i < r->n_cols; i++) {
        before[i] = r->cols[i].len;
        if (!append(&r->cols[i], values[i], r->n == 0)) {
            /* Take back what this row appended: every column keeps r->n elements. */
            for (int k = 0; k <= i; k++)
                r->cols[k].len = before[k];
            return OF_ENOMEM;
        }
    }
    r->n++;
    return OF_OK;
}

void of_db_rows_clear(of_db_rows *r)
{
    for (int i = 0; i < r->n_cols; i++)
        r->cols[i].len = 0;
    r->n = 0;
}

int of_db_rows_flush(of_db_rows *r, of_db_pipeline *p)
{
    return of_db_rows_flush_with(r, p, false, NULL);
}

int of_db_rows_flush_with(of_db_rows *r, of_db_pipeline *p, bool with, const char *extra)
{
    const char *values[64];
    int rc;
    if (r->n == 0)
        return OF_OK;
    if (r->n_cols + 1 > (int)(sizeof values / sizeof values[0])) {
        of_db_rows_clear(r);
        return OF_EINVAL;
    }
    for (int i = 0; i < r->n_cols; i++) {
        /* reserve() always left room for the closing brace and the NUL. */
        r->cols[i].s[r->cols[i].len] = '}';
        r->cols[i].s[r->cols[i].len + 1] = '\0';
        values[i] = r->cols[i].s;
    }
    if (with)
        values[r->n_cols] = extra;
    rc = of_db_pipeline_add(p, r->stmt, r->n_cols + (with ? 1 : 0), values);
    of_db_rows_clear(r);
    return rc;
}

void of_db_rows_free(of_db_rows *r)
{
    for (int i = 0; r->cols != NULL && i < r->n_cols; i++)
        free(r->cols[i].s);
    free(r->cols);
    memset(r, 0, sizeof *r);
}

char *of_db_hex(const void *bytes, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *b = bytes;
    char *out = malloc(2 * len + 1);
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * len] = '\0';
    return out;
}
