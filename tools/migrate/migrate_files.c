/* migrate_files.c: finds versioned SQL migration files and checks their names. */
#include "migrate_internal.h"

/* Writes a message into err, replacing what was there. */
void mig_set_err(char *err, size_t errsize, const char *fmt, ...)
{
    va_list ap;
    if (err == NULL || errsize == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errsize, fmt, ap);
    va_end(ap);
}

/* Appends a line to err (after a '\n' when err is not empty). */
void mig_add_err(char *err, size_t errsize, const char *fmt, ...)
{
    va_list ap;
    size_t used;
    if (err == NULL || errsize == 0)
        return;
    used = strnlen(err, errsize);
    if (used + 2 >= errsize)
        return;
    if (used > 0) {
        err[used++] = '\n';
        err[used] = '\0';
    }
    va_start(ap, fmt);
    vsnprintf(err + used, errsize - used, fmt, ap);
    va_end(ap);
}

/* Copies a libpq message without its trailing newlines. */
void mig_trimmed(char *dst, size_t size, const char *src)
{
    size_t len;
    snprintf(dst, size, "%s", src != NULL ? src : "");
    len = strlen(dst);
    while (len > 0 && (dst[len - 1] == '\n' || dst[len - 1] == '\r' || dst[len - 1] == ' '))
        dst[--len] = '\0';
}

bool mig_ends_with(const char *s, size_t len, const char *suffix)
{
    size_t sl = strlen(suffix);
    return len >= sl && memcmp(s + len - sl, suffix, sl) == 0;
}

char *mig_join_path(const char *dir, const char *file)
{
    size_t dl = strlen(dir), fl = strlen(file);
    char *path = malloc(dl + fl + 2);
    if (path == NULL)
        return NULL;
    memcpy(path, dir, dl);
    path[dl] = '/';
    memcpy(path + dl + 1, file, fl + 1);
    return path;
}

int of_migration_parse_name(const char *file, int64_t *version, char *name, size_t namesize,
                            of_migration_kind *kind, char *err, size_t errsize)
{
    size_t len, stem_len, digits = 0, name_len;
    int64_t v = 0;
    of_migration_kind k;

    if (file == NULL || version == NULL || name == NULL || kind == NULL) {
        mig_set_err(err, errsize, "could not parse migration file name: missing argument");
        return OF_MIGRATE_EARG;
    }
    len = strlen(file);
    /* Hidden files, README.md, editor backups (x.sql~): not migrations. */
    if (file[0] == '.' || !mig_ends_with(file, len, ".sql"))
        return 0;

    if (mig_ends_with(file, len, MIG_UP_SUFFIX)) {
        k = OF_MIGRATION_UP;
        stem_len = len - (sizeof MIG_UP_SUFFIX - 1);
    } else if (mig_ends_with(file, len, MIG_DOWN_SUFFIX)) {
        k = OF_MIGRATION_DOWN;
        stem_len = len - (sizeof MIG_DOWN_SUFFIX - 1);
    } else {
        mig_set_err(err, errsize,
                    "invalid migration file name \"%s\": expected NNNN_name.up.sql or "
                    "NNNN_name.down.sql",
                    file);
        return OF_MIGRATE_EFILES;
    }
    while (digits < stem_len && file[digits] >= '0' && file[digits] <= '9')
        digits++;
    if (digits == 0 || digits >= stem_len || file[digits] != '_') {
        mig_set_err(err, errsize,
                    "invalid migration file name \"%s\": expected a version number, \"_\" and a "
                    "name before \"%s\"",
                    file, k == OF_MIGRATION_UP ? MIG_UP_SUFFIX : MIG_DOWN_SUFFIX);
        return OF_MIGRATE_EFILES;
    }
    /* 18 decimal digits always fit in an int64_t. */
    if (digits > 18) {
        mig_set_err(err, errsize,
                    "invalid migration file name \"%s\": version has more than 18 digits", file);
        return OF_MIGRATE_EFILES;
    }
    for (size_t i = 0; i < digits; i++)
        v = v * 10 + (file[i] - '0');
    if (v < 1) {
        mig_set_err(err, errsize, "invalid migration file name \"%s\": version must be at least 1",
                    file);
        return OF_MIGRATE_EFILES;
    }
    name_len = stem_len - digits - 1;
    if (name_len == 0) {
        mig_set_err(err, errsize,
                    "invalid migration file name \"%s\": the name after \"_\" is empty", file);
        return OF_MIGRATE_EFILES;
    }
    if (name_len > OF_MIGRATE_NAME_MAX) {
        mig_set_err(err, errsize,
                    "invalid migration file name \"%s\": name is longer than %d characters", file,
                    OF_MIGRATE_NAME_MAX);
        return OF_MIGRATE_EFILES;
    }
    for (size_t i = digits + 1; i < stem_len; i++) {
        char c = file[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-';
        if (!ok) {
            mig_set_err(err, errsize,
                        "invalid migration file name \"%s\": the name may only contain letters, "
                        "digits, \"_\" and \"-\"",
                        file);
            return OF_MIGRATE_EFILES;
        }
    }
    if (name_len + 1 > namesize) {
        mig_set_err(err, errsize, "could not parse \"%s\": name buffer too small", file);
        return OF_MIGRATE_EARG;
    }
    memcpy(name, file + digits + 1, name_len);
    name[name_len] = '\0';
    *version = v;
    *kind = k;
    return 1;
}

/* One parsed file name while a set is being built. */
typedef struct name_entry {
    int64_t version;                    /* parsed version */
    of_migration_kind kind;             /* up or down */
    const char *file;                   /* the caller's file name */
    size_t stem_len;                    /* length of "NNNN_name" */
    char name[OF_MIGRATE_NAME_MAX + 1]; /* parsed name */
} name_entry;

/* Orders by version, then up before down, then file name (so the files named
 * in a duplicate error do not depend on readdir order). */
static int compare_entries(const void *a, const void *b)
{
    const name_entry *x = a, *y = b;
    if (x->version != y->version)
        return x->version < y->version ? -1 : 1;
    if (x->kind != y->kind)
        return x->kind == OF_MIGRATION_UP ? -1 : 1;
    return strcmp(x->file, y->file);
}

void of_migration_set_free(of_migration_set *set)
{
    if (set == NULL)
        return;
    for (size_t i = 0; i < set->count; i++) {
        free(set->items[i].name);
        free(set->items[i].up_file);
        free(set->items[i].down_file);
    }
    free(set->items);
    free(set->dir);
    memset(set, 0, sizeof *set);
}

int of_migration_set_from_names(of_migration_set *set, const char *dir, const char *const *names,
                                size_t n, char *err, size_t errsize)
{
    int result = OF_MIGRATE_OK;
    name_entry *entries = NULL;
    size_t n_entries = 0;
    of_migration_set tmp = {0};

    if (set == NULL || dir == NULL || (names == NULL && n > 0)) {
        mig_set_err(err, errsize, "could not build migration set: missing argument");
        return OF_MIGRATE_EARG;
    }
    memset(set, 0, sizeof *set);
    entries = calloc(n > 0 ? n : 1, sizeof *entries);
    if (entries == NULL) {
        result = OF_MIGRATE_ENOMEM;
        mig_set_err(err, errsize, "could not build migration set: out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        name_entry *e = &entries[n_entries];
        int rc = of_migration_parse_name(names[i], &e->version, e->name, sizeof e->name, &e->kind,
                                         err, errsize);
        if (rc < 0) {
            result = rc;
            goto out;
        }
        if (rc == 0)
            continue;
        e->file = names[i];
        e->stem_len = strlen(names[i]) -
                      (e->kind == OF_MIGRATION_UP ? sizeof MIG_UP_SUFFIX : sizeof MIG_DOWN_SUFFIX) +
                      1;
        n_entries++;
    }
    qsort(entries, n_entries, sizeof *entries, compare_entries);

    tmp.dir = strdup(dir);
    tmp.items = calloc(n_entries > 0 ? n_entries : 1, sizeof *tmp.items);
    if (tmp.dir == NULL || tmp.items == NULL) {
        result = OF_MIGRATE_ENOMEM;
        mig_set_err(err, errsize, "could not build migration set: out of memory");
        goto out;
    }
    for (size_t i = 0; i < n_entries;) {
        const name_entry *up = NULL, *down = NULL;
        size_t j;
        of_migration *m;
        for (j = i; j < n_entries && entries[j].version == entries[i].version; j++) {
            const name_entry *e = &entries[j];
            const name_entry **slot = e->kind == OF_MIGRATION_UP ? &up : &down;
            if (*slot != NULL) {
                mig_set_err(err, errsize,
                            "duplicate migration version %" PRId64 " in \"%s\": \"%s\" and \"%s\"",
                            e->version, dir, (*slot)->file, e->file);
                result = OF_MIGRATE_EFILES;
                goto out;
            }
            *slot = e;
        }
        if (up == NULL) {
            mig_set_err(err, errsize,
                        "migration version %" PRId64 " in \"%s\" has no up file: \"%s\" needs a "
                        "matching \"%.*s%s\"",
                        down->version, dir, down->file, (int)down->stem_len, down->file,
                        MIG_UP_SUFFIX);
            result = OF_MIGRATE_EFILES;
            goto out;
        }
        if (down != NULL &&
            (down->stem_len != up->stem_len || memcmp(down->file, up->file, up->stem_len) != 0)) {
            mig_set_err(err, errsize,
                        "down file \"%s\" in \"%s\" does not match its up file \"%s\": expected "
                        "\"%.*s%s\"",
                        down->file, dir, up->file, (int)up->stem_len, up->file, MIG_DOWN_SUFFIX);
            result = OF_MIGRATE_EFILES;
            goto out;
        }
        m = &tmp.items[tmp.count];
        m->version = up->version;
        m->name = strdup(up->name);
        m->up_file = strdup(up->file);
        m->down_file = down != NULL ? strdup(down->file) : NULL;
        tmp.count++;
        if (m->name == NULL || m->up_file == NULL || (down != NULL && m->down_file == NULL)) {
            result = OF_MIGRATE_ENOMEM;
            mig_set_err(err, errsize, "could not build migration set: out of memory");
            goto out;
        }
        i = j;
    }
    *set = tmp;
    memset(&tmp, 0, sizeof tmp);
out:
    of_migration_set_free(&tmp);
    free(entries);
    return result;
}

int of_migration_set_load(of_migration_set *set, const char *dir, char *err, size_t errsize)
{
    int result = OF_MIGRATE_OK;
    DIR *d = NULL;
    char **names = NULL;
    size_t n = 0, cap = 0;

    if (set == NULL || dir == NULL) {
        mig_set_err(err, errsize, "could not load migrations: missing argument");
        return OF_MIGRATE_EARG;
    }
    memset(set, 0, sizeof *set);
    d = opendir(dir);
    if (d == NULL) {
        mig_set_err(err, errsize, "could not open migrations directory \"%s\": %s", dir,
                    strerror(errno));
        result = OF_MIGRATE_EFILES;
        goto out;
    }
    for (;;) {
        struct dirent *de;
        struct stat st;
        char *path;
        int rc;

        errno = 0;
        de = readdir(d);
        if (de == NULL) {
            if (errno != 0) {
                mig_set_err(err, errsize, "could not read migrations directory \"%s\": %s", dir,
                            strerror(errno));
                result = OF_MIGRATE_EFILES;
                goto out;
            }
            break;
        }
        if (de->d_name[0] == '.')
            continue;
        path = mig_join_path(dir, de->d_name);
        if (path == NULL) {
            mig_set_err(err, errsize, "could not load migrations: out of memory");
            result = OF_MIGRATE_ENOMEM;
            goto out;
        }
        rc = stat(path, &st);
        if (rc != 0) {
            mig_set_err(err, errsize, "could not stat \"%s\": %s", path, strerror(errno));
            free(path);
            result = OF_MIGRATE_EFILES;
            goto out;
        }
        free(path);
        /* Subdirectories and special files are not migrations. */
        if (!S_ISREG(st.st_mode))
            continue;
        if (n == cap) {
            size_t ncap = cap > 0 ? cap * 2 : 16;
            char **grown = realloc(names, ncap * sizeof *names);
            if (grown == NULL) {
                mig_set_err(err, errsize, "could not load migrations: out of memory");
                result = OF_MIGRATE_ENOMEM;
                goto out;
            }
            names = grown;
            cap = ncap;
        }
        names[n] = strdup(de->d_name);
        if (names[n] == NULL) {
            mig_set_err(err, errsize, "could not load migrations: out of memory");
            result = OF_MIGRATE_ENOMEM;
            goto out;
        }
        n++;
    }
    result = of_migration_set_from_names(set, dir, (const char *const *)names, n, err, errsize);
out:
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (d != NULL)
        closedir(d);
    return result;
}

const of_migration *of_migration_set_find(const of_migration_set *set, int64_t version)
{
    if (set == NULL)
        return NULL;
    for (size_t i = 0; i < set->count; i++) {
        if (set->items[i].version == version)
            return &set->items[i];
    }
    return NULL;
}
