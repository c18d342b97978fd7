#include "devices/options.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int options_parse(const char *text, struct patctl_option **opts)
{
    *opts = NULL;
    if (!text)
        text = "";
    size_t len = strlen(text);
    int cap = 1;
    for (size_t i = 0; i < len; i++)
        if (text[i] == ',' || text[i] == ';' || text[i] == ' ')
            cap++;
    struct patctl_option *o = malloc(sizeof(*o) * (size_t)cap + len + 1);
    if (!o)
        return PATCTL_ERR_NOMEM;
    char *buf = (char *)(o + cap);
    memcpy(buf, text, len + 1);
    int n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",; \t\n", &save); tok; tok = strtok_r(NULL, ",; \t\n", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq || eq == tok) {
            free(o);
            return PATCTL_ERR_ARG;
        }
        *eq = '\0';
        o[n].key = tok;
        o[n].value = eq + 1;
        n++;
    }
    *opts = o;
    return n;
}

const char *options_get(const struct patctl_option *o, int n, const char *key)
{
    const char *v = NULL;
    for (int i = 0; i < n; i++)
        if (strcmp(o[i].key, key) == 0)
            v = o[i].value;
    return v;
}

int options_float(const struct patctl_option *o, int n, const char *key, double def,
                  double *out, char *err, size_t errlen)
{
    const char *v = options_get(o, n, key);
    *out = def;
    if (!v)
        return 0;
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (end == v || *end != '\0' || errno || !isfinite(d)) {
        snprintf(err, errlen, "option %s: expected a finite number, got '%s'", key, v);
        return PATCTL_ERR_ARG;
    }
    *out = d;
    return 0;
}

int options_int(const struct patctl_option *o, int n, const char *key, long def,
                long *out, char *err, size_t errlen)
{
    const char *v = options_get(o, n, key);
    *out = def;
    if (!v)
        return 0;
    char *end;
    errno = 0;
    long d = strtol(v, &end, 10);
    if (end == v || *end != '\0' || errno) {
        snprintf(err, errlen, "option %s: expected an integer, got '%s'", key, v);
        return PATCTL_ERR_ARG;
    }
    *out = d;
    return 0;
}

int options_u64(const struct patctl_option *o, int n, const char *key, uint64_t def,
                uint64_t *out, char *err, size_t errlen)
{
    const char *v = options_get(o, n, key);
    *out = def;
    if (!v)
        return 0;
    char *end;
    errno = 0;
    unsigned long long d = strtoull(v, &end, 10);
    if (end == v || *end != '\0' || errno || v[0] == '-') {
        snprintf(err, errlen, "option %s: expected a non-negative integer, got '%s'", key, v);
        return PATCTL_ERR_ARG;
    }
    *out = (uint64_t)d;
    return 0;
}

static int in_list(const char *key, const char *const *list)
{
    for (const char *const *k = list; k && *k; k++)
        if (strcmp(key, *k) == 0)
            return 1;
    return 0;
}

int options_check_known2(const struct patctl_option *o, int n, const char *const *known,
                         const char *const *more, const char *driver, char *err,
                         size_t errlen)
{
    for (int i = 0; i < n; i++) {
        if (in_list(o[i].key, known) || in_list(o[i].key, more))
            continue;
        size_t used = (size_t)snprintf(err, errlen, "driver %s: unknown option '%s' (known:",
                                       driver, o[i].key);
        for (int l = 0; l < 2; l++)
            for (const char *const *k = l ? more : known; k && *k && used < errlen; k++)
                used += (size_t)snprintf(err + used, errlen - used, " %s", *k);
        if (used < errlen)
            snprintf(err + used, errlen - used, ")");
        return PATCTL_ERR_ARG;
    }
    return 0;
}

int options_check_known(const struct patctl_option *o, int n, const char *const *known,
                        const char *driver, char *err, size_t errlen)
{
    return options_check_known2(o, n, known, NULL, driver, err, errlen);
}
