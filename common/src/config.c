/* config.c: table-driven settings from defaults, the environment and flags. */
#include "orderflow/config.h"

#include "orderflow/log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>

static const char *type_name(of_config_type t)
{
    switch (t) {
    case OF_CFG_STRING:
        return "string";
    case OF_CFG_SECRET:
        return "secret";
    case OF_CFG_INT:
        return "int";
    case OF_CFG_BOOL:
        return "bool";
    case OF_CFG_MS:
        return "duration";
    }
    return "?";
}

static int parse_bool(const char *text, int *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(text, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(text, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return OF_EINVAL;
}

static int parse_int(const char *text, int64_t *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0')
        return OF_EINVAL;
    *out = (int64_t)v;
    return 0;
}

/* Durations: a bare number is milliseconds; suffixes ms, s, m, h. */
static int parse_ms(const char *text, int64_t *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    int64_t mult;
    if (errno != 0 || end == text || v < 0)
        return OF_EINVAL;
    if (*end == '\0' || strcmp(end, "ms") == 0)
        mult = 1;
    else if (strcmp(end, "s") == 0)
        mult = 1000;
    else if (strcmp(end, "m") == 0)
        mult = 60 * 1000;
    else if (strcmp(end, "h") == 0)
        mult = 3600 * 1000;
    else if (strcmp(end, "d") == 0)
        mult = 24LL * 3600 * 1000;
    else
        return OF_EINVAL;
    if (v > INT64_MAX / mult)
        return OF_EINVAL;
    *out = (int64_t)v * mult;
    return 0;
}

/* Parses text for item into target; origin names where the text came from. */
static int apply_value(const of_config_item *item, void *target, const char *text,
                       const char *origin, FILE *err)
{
    char *field = (char *)target + item->offset;
    int64_t num = 0;
    int b = 0;

    switch (item->type) {
    case OF_CFG_STRING:
    case OF_CFG_SECRET: {
        char *copy = strdup(text);
        if (copy == NULL) {
            fprintf(err, "could not set \"%s\": out of memory\n", item->name);
            return OF_ENOMEM;
        }
        free(*(char **)field);
        *(char **)field = copy;
        return 0;
    }
    case OF_CFG_BOOL:
        if (parse_bool(text, &b) != 0) {
            fprintf(err, "invalid value for \"%s\" (%s): \"%s\" is not a boolean\n", item->name,
                    origin, text);
            return OF_EINVAL;
        }
        *(int *)field = b;
        return 0;
    case OF_CFG_INT:
    case OF_CFG_MS:
        if ((item->type == OF_CFG_INT ? parse_int(text, &num) : parse_ms(text, &num)) != 0) {
            fprintf(
                err, "invalid value for \"%s\" (%s): \"%s\" is not %s\n", item->name, origin, text,
                item->type == OF_CFG_INT ? "an integer" : "a duration like 500ms, 5s, 2m, 1h, 30d");
            return OF_EINVAL;
        }
        if (item->min <= item->max && (num < item->min || num > item->max)) {
            fprintf(err,
                    "invalid value for \"%s\" (%s): %" PRId64 " is outside %" PRId64 "..%" PRId64
                    "%s\n",
                    item->name, origin, num, item->min, item->max,
                    item->type == OF_CFG_MS ? " ms" : "");
            return OF_EINVAL;
        }
        *(int64_t *)field = num;
        return 0;
    }
    return OF_EINVAL;
}

static const of_config_item *find_flag(const of_config_item *items, size_t n, const char *flag,
                                       size_t len)
{
    for (size_t i = 0; i < n; i++) {
        if (items[i].flag != NULL && strlen(items[i].flag) == len &&
            strncmp(items[i].flag, flag, len) == 0)
            return &items[i];
    }
    return NULL;
}

int of_config_load(const of_config_item *items, size_t n, void *target, int argc, char **argv,
                   int *argc_rest, FILE *err)
{
    int rest = 1;
    if (err == NULL)
        err = stderr;

    for (size_t i = 0; i < n; i++) {
        char *field = (char *)target + items[i].offset;
        if (items[i].type == OF_CFG_STRING || items[i].type == OF_CFG_SECRET)
            *(char **)field = NULL;
        if (items[i].def != NULL && apply_value(&items[i], target, items[i].def, "default", err))
            return OF_CONFIG_ERR;
    }
    for (size_t i = 0; i < n; i++) {
        const char *v = items[i].env ? getenv(items[i].env) : NULL;
        char origin[96];
        if (v == NULL || *v == '\0')
            continue;
        snprintf(origin, sizeof origin, "environment variable %s", items[i].env);
        if (apply_value(&items[i], target, v, origin, err) != 0)
            return OF_CONFIG_ERR;
    }
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--") == 0) {
            for (i++; i < argc; i++)
                argv[rest++] = argv[i];
            break;
        }
        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
            argv[rest++] = argv[i];
            continue;
        }
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0)
            return OF_CONFIG_HELP;
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const of_config_item *item = find_flag(items, n, name, len);
        const char *value = eq ? eq + 1 : NULL;
        char origin[96];
        if (item == NULL) {
            fprintf(err, "unknown option \"%.*s\"\n", (int)(len + 2), arg);
            return OF_CONFIG_ERR;
        }
        if (value == NULL) {
            if (item->type == OF_CFG_BOOL) {
                value = "true";
            } else if (i + 1 < argc) {
                value = argv[++i];
            } else {
                fprintf(err, "option \"--%s\" needs a value\n", item->flag);
                return OF_CONFIG_ERR;
            }
        }
        snprintf(origin, sizeof origin, "flag --%s", item->flag);
        if (apply_value(item, target, value, origin, err) != 0)
            return OF_CONFIG_ERR;
    }
    if (argc_rest != NULL)
        *argc_rest = rest;
    return OF_CONFIG_OK;
}

void of_config_print_help(FILE *out, const char *progname, const char *summary,
                          const of_config_item *items, size_t n)
{
    fprintf(out, "usage: %s [options]\n", progname);
    if (summary != NULL)
        fprintf(out, "%s\n", summary);
    fprintf(out, "\nSettings (flag overrides environment overrides default):\n");
    for (size_t i = 0; i < n; i++) {
        const of_config_item *it = &items[i];
        fprintf(out, "  --%-24s %-28s %-8s default: %s\n      %s\n", it->flag ? it->flag : "-",
                it->env ? it->env : "-", type_name(it->type),
                it->def ? (it->type == OF_CFG_SECRET ? "(set)" : it->def) : "(none)", it->help);
    }
    fprintf(out, "  --%-24s show this help\n", "help");
}

/* Appends n bytes of src to dst (size bytes, *o used), truncating. */
static void put(char *dst, size_t size, size_t *o, const char *src, size_t n)
{
    while (n-- > 0 && *o + 1 < size)
        dst[(*o)++] = *src++;
    dst[*o] = '\0';
}

void of_config_mask_secret(char *dst, size_t size, const char *src)
{
    const char *scheme = strstr(src, "://");
    size_t o = 0;
    if (size == 0)
        return;
    dst[0] = '\0';
    if (scheme == NULL) {
        snprintf(dst, size, "****");
        return;
    }
    const char *auth = scheme + 3;
    const char *auth_end = auth + strcspn(auth, "/?#");
    const char *at = NULL;
    for (const char *q = auth; q < auth_end; q++)
        if (*q == '@')
            at = q; /* the last one: an unencoded '@' in a password stays masked */
    const char *colon = at != NULL ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
    if (colon != NULL) {
        put(dst, size, &o, src, (size_t)(colon + 1 - src));
        put(dst, size, &o, "****", 4);
        put(dst, size, &o, at, (size_t)(auth_end - at));
    } else {
        put(dst, size, &o, src, (size_t)(auth_end - src));
    }
    const char *rest = auth_end;
    const char *query = strchr(rest, '?');
    if (query == NULL) {
        put(dst, size, &o, rest, strlen(rest));
        return;
    }
    put(dst, size, &o, rest, (size_t)(query + 1 - rest));
    for (const char *p = query + 1; *p != '\0';) {
        size_t len = strcspn(p, "&#");
        const char *eq = memchr(p, '=', len);
        size_t name_len = eq != NULL ? (size_t)(eq - p) : len;
        bool secret = (name_len == 8 && strncmp(p, "password", 8) == 0) ||
                      (name_len == 11 && strncmp(p, "sslpassword", 11) == 0);
        if (secret && eq != NULL) {
            put(dst, size, &o, p, name_len + 1);
            put(dst, size, &o, "****", 4);
        } else {
            put(dst, size, &o, p, len);
        }
        p += len;
        if (*p == '&') {
            put(dst, size, &o, "&", 1);
            p++;
        } else if (*p == '#') {
            put(dst, size, &o, p, strlen(p));
            break;
        }
    }
}

void of_config_log(const of_config_item *items, size_t n, const void *target)
{
    for (size_t i = 0; i < n; i++) {
        const char *field = (const char *)target + items[i].offset;
        char text[512];
        switch (items[i].type) {
        case OF_CFG_STRING:
            snprintf(text, sizeof text, "%s",
                     *(char *const *)field ? *(char *const *)field : "(unset)");
            break;
        case OF_CFG_SECRET:
            if (*(char *const *)field == NULL)
                snprintf(text, sizeof text, "(unset)");
            else
                of_config_mask_secret(text, sizeof text, *(char *const *)field);
            break;
        case OF_CFG_BOOL:
            snprintf(text, sizeof text, "%s", *(const int *)field ? "true" : "false");
            break;
        case OF_CFG_INT:
        case OF_CFG_MS:
            snprintf(text, sizeof text, "%" PRId64 "%s", *(const int64_t *)field,
                     items[i].type == OF_CFG_MS ? "ms" : "");
            break;
        }
        of_log_info("config %s = %s", items[i].name, text);
    }
}

void of_config_free(const of_config_item *items, size_t n, void *target)
{
    for (size_t i = 0; i < n; i++) {
        if (items[i].type == OF_CFG_STRING || items[i].type == OF_CFG_SECRET) {
            char **field = (char **)((char *)target + items[i].offset);
            free(*field);
            *field = NULL;
        }
    }
}

void of_config_load_or_exit(const of_config_item *items, size_t n, void *target, int argc,
                            char **argv, int *argc_rest, const char *progname, const char *summary)
{
    int rc = of_config_load(items, n, target, argc, argv, argc_rest, stderr);
    if (rc == OF_CONFIG_HELP) {
        of_config_print_help(stdout, progname, summary, items, n);
        of_config_free(items, n, target);
        exit(EX_OK);
    }
    if (rc != OF_CONFIG_OK) {
        fprintf(stderr, "%s: configuration error; see %s --help\n", progname, progname);
        of_config_free(items, n, target);
        exit(EX_CONFIG);
    }
}
