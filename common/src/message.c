/* message.c: owned Kafka records (headers, key, value) and their release. */
#include "orderflow/message.h"

#include "orderflow/error.h"

#include <stdlib.h>
#include <string.h>

static char *dup_bytes(const void *src, size_t len)
{
    char *p = malloc(len + 1);
    if (p == NULL)
        return NULL;
    if (len > 0)
        memcpy(p, src, len);
    p[len] = '\0';
    return p;
}

int of_message_add_header(of_message *m, const char *name, const void *value, size_t len)
{
    if (m->n_headers == m->cap_headers) {
        size_t cap = m->cap_headers ? m->cap_headers * 2 : 8;
        of_header *h = realloc(m->headers, cap * sizeof *h);
        if (h == NULL)
            return OF_ENOMEM;
        m->headers = h;
        m->cap_headers = cap;
    }
    of_header *h = &m->headers[m->n_headers];
    h->name = dup_bytes(name, strlen(name));
    h->value = dup_bytes(value, value ? len : 0);
    h->len = value ? len : 0;
    if (h->name == NULL || h->value == NULL) {
        free(h->name);
        free(h->value);
        return OF_ENOMEM;
    }
    m->n_headers++;
    return 0;
}

void of_message_remove_header(of_message *m, const char *name)
{
    size_t kept = 0;
    for (size_t i = 0; i < m->n_headers; i++) {
        if (strcmp(m->headers[i].name, name) == 0) {
            free(m->headers[i].name);
            free(m->headers[i].value);
            continue;
        }
        m->headers[kept++] = m->headers[i];
    }
    m->n_headers = kept;
}

void of_message_free(of_message *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n_headers; i++) {
        free(m->headers[i].name);
        free(m->headers[i].value);
    }
    free(m->headers);
    free(m->id);
    free(m->topic);
    free(m->key);
    free(m->value);
    memset(m, 0, sizeof *m);
}
