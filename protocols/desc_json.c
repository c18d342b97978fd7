/* Device description <-> JSON with cJSON (see desc_json.h). */
#include "protocols/desc_json.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "patctl/error.h"
#include "protocols/frame.h"

static int add_str(cJSON *o, const char *k, const char *v) { return cJSON_AddStringToObject(o, k, v) != NULL; }
static int add_num(cJSON *o, const char *k, double v) { return cJSON_AddNumberToObject(o, k, v) != NULL; }

char *pt_desc_to_json(const struct patctl_device_desc *d, const pt_desc_extra *extra)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    int ok = add_num(o, "protocol", PT_VERSION) && add_str(o, "model", d->model) && add_str(o, "about", d->about) &&
             add_num(o, "n_in", d->n_in) && add_num(o, "n_out", d->n_out) &&
             add_str(o, "in_unit", d->in_unit) && add_str(o, "out_unit", d->out_unit) &&
             add_num(o, "in_lo", d->in_lo) && add_num(o, "in_hi", d->in_hi) &&
             cJSON_AddBoolToObject(o, "simulated", (d->flags & PATCTL_DEV_SIMULATED) != 0) &&
             cJSON_AddBoolToObject(o, "has_vjp", (d->flags & PATCTL_DEV_HAS_VJP) != 0);
    cJSON *blocks = ok ? cJSON_AddArrayToObject(o, "blocks") : NULL;
    ok = ok && blocks;
    for (int b = 0; ok && b < d->n_blocks && b < PATCTL_MAX_BLOCKS; b++) {
        const struct patctl_param_block *k = &d->blocks[b];
        cJSON *j = cJSON_CreateObject();
        ok = j && cJSON_AddItemToArray(blocks, j);
        ok = ok && add_str(j, "name", k->name) && add_str(j, "unit", k->unit) && add_str(j, "about", k->about) &&
             add_num(j, "rows", k->rows) && add_num(j, "cols", k->cols) && add_num(j, "lo", k->lo) &&
             add_num(j, "hi", k->hi) && add_num(j, "max_step", k->max_step) && add_num(j, "safe", k->safe) &&
             add_num(j, "init_lo", k->init_lo) && add_num(j, "init_hi", k->init_hi);
    }
    if (ok && extra) {
        if (extra->driver[0])
            ok = add_str(o, "driver", extra->driver);
        if (ok && extra->mtu)
            ok = add_num(o, "mtu", extra->mtu);
        if (ok && extra->max_message)
            ok = add_num(o, "max_message", extra->max_message);
    }
    char *s = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

/* Field readers: 0 or -1 with a message. */
typedef struct {
    char *err;
    size_t errlen;
    const char *where;
} ctx;

static int fail(ctx *c, const char *key, const char *what)
{
    snprintf(c->err, c->errlen, "device description: %s%s'%s' %s", c->where, c->where[0] ? " " : "", key, what);
    return -1;
}

static int get_str(ctx *c, const cJSON *o, const char *key, char *out, size_t cap, int required)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) {
        out[0] = '\0';
        return required ? fail(c, key, "is missing") : 0;
    }
    if (!cJSON_IsString(v) || !v->valuestring)
        return fail(c, key, "must be a string");
    size_t n = strlen(v->valuestring);
    if (n >= cap)
        return fail(c, key, "is too long");
    memcpy(out, v->valuestring, n + 1);
    return 0;
}

static int get_num(ctx *c, const cJSON *o, const char *key, double lo, double hi, double def, int required,
                   double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) {
        *out = def;
        return required ? fail(c, key, "is missing") : 0;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return fail(c, key, "must be a finite number");
    if (v->valuedouble < lo || v->valuedouble > hi)
        return fail(c, key, "is out of range");
    *out = v->valuedouble;
    return 0;
}

static int get_float(ctx *c, const cJSON *o, const char *key, int required, float *out)
{
    double v;
    if (get_num(c, o, key, -3.4e38, 3.4e38, 0, required, &v))
        return -1;
    *out = (float)v;
    return 0;
}

static int get_int(ctx *c, const cJSON *o, const char *key, double lo, double hi, int32_t *out)
{
    double v;
    if (get_num(c, o, key, lo, hi, 0, 1, &v))
        return -1;
    if (v != floor(v))
        return fail(c, key, "must be an integer");
    *out = (int32_t)v;
    return 0;
}

static int get_bool(ctx *c, const cJSON *o, const char *key, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    *out = 0;
    if (!v)
        return 0;
    if (!cJSON_IsBool(v))
        return fail(c, key, "must be true or false");
    *out = cJSON_IsTrue(v);
    return 0;
}

int pt_desc_from_json(const char *json, size_t n, struct patctl_device_desc *d, pt_desc_extra *extra,
                      char *err, size_t errlen)
{
    memset(d, 0, sizeof(*d));
    if (extra)
        memset(extra, 0, sizeof(*extra));
    ctx c = {err, errlen, ""};
    cJSON *o = cJSON_ParseWithLength(json, n);
    if (!o || !cJSON_IsObject(o)) {
        snprintf(err, errlen, "device description: not a JSON object");
        cJSON_Delete(o);
        return PATCTL_ERR_FORMAT;
    }
    int simulated = 0, has_vjp = 0;
    double proto;
    int rc = get_num(&c, o, "protocol", PT_VERSION_MIN, PT_VERSION, 1, 0, &proto) || get_str(&c, o, "model", d->model, sizeof(d->model), 1) ||
             get_str(&c, o, "about", d->about, sizeof(d->about), 0) ||
             get_int(&c, o, "n_in", 1, 1e8, &d->n_in) || get_int(&c, o, "n_out", 1, 1e8, &d->n_out) ||
             get_str(&c, o, "in_unit", d->in_unit, sizeof(d->in_unit), 0) ||
             get_str(&c, o, "out_unit", d->out_unit, sizeof(d->out_unit), 0) ||
             get_float(&c, o, "in_lo", 1, &d->in_lo) || get_float(&c, o, "in_hi", 1, &d->in_hi) ||
             get_bool(&c, o, "simulated", &simulated) || get_bool(&c, o, "has_vjp", &has_vjp);
    if (!rc && !(d->in_lo <= d->in_hi))
        rc = fail(&c, "in_lo", "exceeds in_hi");
    const cJSON *blocks = rc ? NULL : cJSON_GetObjectItemCaseSensitive(o, "blocks");
    if (!rc && (!blocks || !cJSON_IsArray(blocks)))
        rc = fail(&c, "blocks", "must be an array");
    if (!rc && cJSON_GetArraySize(blocks) > PATCTL_MAX_BLOCKS)
        rc = fail(&c, "blocks", "has more entries than patctl supports (8)");
    int b = 0;
    char where[32];
    const cJSON *j;
    if (!rc) {
        cJSON_ArrayForEach(j, blocks) {
            struct patctl_param_block *k = &d->blocks[b];
            snprintf(where, sizeof(where), "blocks[%d]", b);
            c.where = where;
            if (!cJSON_IsObject(j)) {
                rc = fail(&c, "", "must be an object");
                break;
            }
            if (get_str(&c, j, "name", k->name, sizeof(k->name), 1) ||
                get_str(&c, j, "unit", k->unit, sizeof(k->unit), 0) ||
                get_str(&c, j, "about", k->about, sizeof(k->about), 0) ||
                get_int(&c, j, "rows", 1, 1e8, &k->rows) || get_int(&c, j, "cols", 1, 1e8, &k->cols) ||
                get_float(&c, j, "lo", 1, &k->lo) || get_float(&c, j, "hi", 1, &k->hi) ||
                get_float(&c, j, "max_step", 0, &k->max_step) || get_float(&c, j, "safe", 1, &k->safe) ||
                get_float(&c, j, "init_lo", 0, &k->init_lo) || get_float(&c, j, "init_hi", 0, &k->init_hi)) {
                rc = -1;
                break;
            }
            if ((double)k->rows * (double)k->cols > 1e8) {
                rc = fail(&c, "rows", "times cols exceeds 1e8 parameters");
                break;
            }
            if (!(k->lo <= k->hi) || !(k->max_step >= 0) || !(k->safe >= k->lo && k->safe <= k->hi)) {
                rc = fail(&c, "lo/hi/safe/max_step", "are inconsistent (need lo <= safe <= hi, max_step >= 0)");
                break;
            }
            b++;
        }
        c.where = "";
    }
    d->n_blocks = b;
    d->flags = (simulated ? PATCTL_DEV_SIMULATED : 0u) | (has_vjp ? PATCTL_DEV_HAS_VJP : 0u);
    if (!rc && extra) {
        double v;
        extra->protocol = (uint32_t)proto;
        rc = get_str(&c, o, "driver", extra->driver, sizeof(extra->driver), 0) ||
             get_num(&c, o, "mtu", 16, 65535, 0, 0, &v);
        if (!rc) {
            extra->mtu = (uint32_t)v;
            rc = get_num(&c, o, "max_message", 0, 4294967295.0, 0, 0, &v);
            extra->max_message = (uint32_t)v;
        }
    }
    cJSON_Delete(o);
    return rc ? PATCTL_ERR_FORMAT : 0;
}
