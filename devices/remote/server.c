/* The device server: any opened device answering protocol requests through
 * its safety boundary (device_run).  Used by `patctl serve`. */
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "devices/remote/remote.h"
#include "protocols/desc_json.h"

typedef struct {
    float *theta, *x, *y, *gx, *gt;
    size_t theta_cap, x_cap, y_cap, gx_cap, gt_cap;
} bufs;

static int grow(float **p, size_t *cap, size_t n)
{
    if (n <= *cap)
        return 0;
    float *q = realloc(*p, sizeof(float) * n);
    if (!q)
        return PATCTL_ERR_NOMEM;
    *p = q;
    *cap = n;
    return 0;
}

static void slog(const serve_opts *o, const char *fmt, ...)
{
    FILE *f = o->log ? o->log : stderr;
    char t[32];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(t, sizeof(t), "%H:%M:%S", &tm);
    fprintf(f, "patctl serve %s: ", t);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fputc('\n', f);
    fflush(f);
}

static int reply_error(pt_server *s, const pt_msg *m, int code, const char *text)
{
    uint8_t head[4];
    pt_put_u32(head, (uint32_t)(int32_t)code);
    pt_part parts[2] = {{head, 4}, {text, strlen(text)}};
    return pt_server_reply(s, m, PT_ERROR, parts, 2);
}

/* A float array from wire bytes: in place when aligned, else copied. */
static const float *floats(const uint8_t *p, size_t n, float **buf, size_t *cap)
{
    if (((uintptr_t)p % _Alignof(float)) == 0)
        return (const float *)(const void *)p;
    if (grow(buf, cap, n ? n : 1))
        return NULL;
    pt_f32_load(*buf, p, n);
    return *buf;
}

static int on_describe(device **d, pt_server *s, const pt_msg *m, const serve_opts *o)
{
    char err[256] = "";
    if (m->len > 0) {
        cJSON *j = cJSON_ParseWithLength((const char *)m->data, m->len);
        const cJSON *seed = j ? cJSON_GetObjectItemCaseSensitive(j, "seed") : NULL;
        if (!j || !cJSON_IsObject(j) || (seed && !cJSON_IsString(seed))) {
            cJSON_Delete(j);
            return reply_error(s, m, PATCTL_ERR_FORMAT, "describe: session options must be a JSON object "
                               "like {\"seed\":\"123\"}");
        }
        if (seed && o->reopen) {
            char *end;
            unsigned long long v = strtoull(seed->valuestring, &end, 10);
            if (*end || end == seed->valuestring) {
                cJSON_Delete(j);
                return reply_error(s, m, PATCTL_ERR_FORMAT, "describe: seed must be a decimal string");
            }
            int rc = o->reopen(o->reopen_user, d, (uint64_t)v, err, sizeof(err));
            if (rc) {
                cJSON_Delete(j);
                slog(o, "cannot reopen the device with seed %llu: %s", v, err);
                return reply_error(s, m, rc, err);
            }
        }
        cJSON_Delete(j);
    }
    pt_desc_extra ex;
    memset(&ex, 0, sizeof(ex));
    snprintf(ex.driver, sizeof(ex.driver), "%s", o->driver ? o->driver : (*d)->drv->name);
    ex.mtu = o->mtu;
    char *json = pt_desc_to_json(&(*d)->desc, &ex);
    if (!json)
        return reply_error(s, m, PATCTL_ERR_NOMEM, "out of memory");
    pt_part p = {json, strlen(json)};
    int rc = pt_server_reply(s, m, PT_DESCRIPTION, &p, 1);
    free(json);
    return rc;
}

static int on_run(device *d, pt_server *s, const pt_msg *m, const serve_opts *o, bufs *b, serve_stats *st)
{
    pt_run r;
    char msg[320];
    if (pt_run_parse(m->data, m->len, &r))
        return reply_error(s, m, PATCTL_ERR_FORMAT, "run: malformed payload");
    if ((long)r.n_theta != d->n_theta || (int32_t)r.n_in != d->desc.n_in) {
        snprintf(msg, sizeof(msg), "run: device %s takes %ld parameters and %d inputs, got %u and %u",
                 d->name, d->n_theta, d->desc.n_in, r.n_theta, r.n_in);
        return reply_error(s, m, PATCTL_ERR_ARG, msg);
    }
    int max_batch = o->max_batch > 0 ? o->max_batch : 1 << 20;
    if ((int64_t)r.batch > max_batch) {
        snprintf(msg, sizeof(msg), "run: batch %u exceeds this server's limit %d", r.batch, max_batch);
        return reply_error(s, m, PATCTL_ERR_ARG, msg);
    }
    int B = (int)r.batch;
    size_t ny = (size_t)B * (size_t)d->desc.n_out;
    const float *theta = floats(r.theta, r.n_theta, &b->theta, &b->theta_cap);
    const float *x = floats(r.x, (size_t)B * r.n_in, &b->x, &b->x_cap);
    if (!theta || !x || grow(&b->y, &b->y_cap, ny ? ny : 1))
        return reply_error(s, m, PATCTL_ERR_NOMEM, "out of memory");
    st->runs++;
    const serve_faults *f = &o->faults;
    if (f->die_after > 0 && (long)st->runs > f->die_after) {
        slog(o, "fault injection: killing this server at run request %llu", (unsigned long long)st->runs);
        raise(SIGKILL);
    }
    /* keep the client's query id and row offset: a seeded simulator then
     * draws the same noise as in-process, also for a part of a pooled batch */
    d->next_id = r.id;
    d->next_row0 = (int64_t)r.row0;
    int rc = device_run(d, theta, x, B, B > 0 ? b->y : NULL);
    d->next_row0 = 0;
    if (rc) {
        st->errors++;
        snprintf(msg, sizeof(msg), "%s", d->err[0] ? d->err : patctl_strerror(rc));
        slog(o, "run %llu (B=%d) failed: %s", (unsigned long long)r.id, B, msg);
        return reply_error(s, m, rc, msg);
    }
    uint32_t rows = (uint32_t)B;
    if (B > 0 && f->nan_every > 0 && st->runs % (uint64_t)f->nan_every == 0) {
        b->y[0] = NAN;
        st->faults_injected++;
        slog(o, "fault injection: NaN in result %llu", (unsigned long long)r.id);
    }
    if (B > 0 && f->short_every > 0 && st->runs % (uint64_t)f->short_every == 0) {
        rows = (uint32_t)B - 1;
        st->faults_injected++;
        slog(o, "fault injection: result %llu one row short", (unsigned long long)r.id);
    }
    if (f->delay_every > 0 && f->delay_ms > 0 && st->runs % (uint64_t)f->delay_every == 0) {
        st->faults_injected++;
        slog(o, "fault injection: delaying result %llu by %d ms", (unsigned long long)r.id, f->delay_ms);
        struct timespec ts = {f->delay_ms / 1000, (long)(f->delay_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    uint8_t head[PT_RESULT_HEAD];
    pt_result_head(head, r.id, rows, (uint32_t)d->desc.n_out);
    pt_part parts[2] = {{head, sizeof(head)}, {b->y, sizeof(float) * (size_t)rows * (size_t)d->desc.n_out}};
    if (o->verbose)
        slog(o, "run %llu B=%d", (unsigned long long)r.id, B);
    return pt_server_reply(s, m, PT_RESULT, parts, 2);
}

static int on_vjp(device *d, pt_server *s, const pt_msg *m, bufs *b)
{
    pt_vjp v;
    if (pt_vjp_parse(m->data, m->len, &v))
        return reply_error(s, m, PATCTL_ERR_FORMAT, "vjp: malformed payload");
    if (!d->drv->vjp || !(d->desc.flags & PATCTL_DEV_HAS_VJP))
        return reply_error(s, m, PATCTL_ERR_UNSUPPORTED, "vjp: this device has no exact VJP");
    if ((long)v.n_theta != d->n_theta || (int32_t)v.n_in != d->desc.n_in || (int32_t)v.n_out != d->desc.n_out ||
        v.batch > (1u << 20))
        return reply_error(s, m, PATCTL_ERR_ARG, "vjp: shapes do not match the device");
    int B = (int)v.batch;
    size_t nx = (size_t)B * v.n_in, ny = (size_t)B * v.n_out;
    float *gy = NULL;
    if (grow(&b->theta, &b->theta_cap, v.n_theta + 1) || grow(&b->x, &b->x_cap, nx + 1) ||
        grow(&b->y, &b->y_cap, ny + 1) || grow(&b->gx, &b->gx_cap, nx + 1) || grow(&b->gt, &b->gt_cap, v.n_theta + 1))
        return reply_error(s, m, PATCTL_ERR_NOMEM, "out of memory");
    gy = b->y;
    pt_f32_load(b->theta, v.theta, v.n_theta);
    pt_f32_load(b->x, v.x, nx);
    pt_f32_load(gy, v.gy, ny);
    /* the same boundary as a run: what the simulation differentiates is what
     * the device would have been sent */
    int rc = boundary_theta(&d->desc, b->theta, b->theta, LIMIT_CLAMP, NULL);
    if (!rc)
        rc = boundary_inputs(&d->desc, b->x, b->x, B, LIMIT_CLAMP, NULL);
    for (size_t i = 0; !rc && i < ny; i++)
        if (!isfinite(gy[i]))
            rc = PATCTL_ERR_NONFINITE;
    if (rc)
        return reply_error(s, m, rc, "vjp: non-finite values refused");
    struct patctl_query q = {.id = v.id, .batch = B, .theta = b->theta, .x = b->x, .row0 = (int64_t)v.row0};
    rc = d->drv->vjp(d->state, &q, gy, (v.want & 1) ? b->gx : NULL, (v.want & 2) ? b->gt : NULL);
    if (rc)
        return reply_error(s, m, rc, "vjp failed");
    uint8_t head[PT_GRADIENT_HEAD];
    pt_gradient_head(head, v.id, v.batch, v.n_in, v.n_theta, v.want);
    pt_part parts[3] = {{head, sizeof(head)},
                        {b->gx, (v.want & 1) ? sizeof(float) * nx : 0},
                        {b->gt, (v.want & 2) ? sizeof(float) * v.n_theta : 0}};
    return pt_server_reply(s, m, PT_GRADIENT, parts, 3);
}

int remote_serve(device **dp, pt_server *s, const serve_opts *o, volatile sig_atomic_t *stop,
                 long max_requests, serve_stats *st)
{
    serve_stats local;
    if (!st)
        st = &local;
    memset(st, 0, sizeof(*st));
    bufs b;
    memset(&b, 0, sizeof(b));
    int rc = 0;
    while (!(stop && *stop) && (max_requests <= 0 || (long)st->requests < max_requests)) {
        pt_msg m;
        rc = pt_server_recv(s, 200, &m);
        if (rc == PATCTL_ERR_TIMEOUT || rc == PATCTL_ERR_INTERRUPTED) {
            rc = 0;
            continue;
        }
        if (rc)
            break;
        st->requests++;
        device *d = *dp;
        switch (m.type) {
        case PT_DESCRIBE: rc = on_describe(dp, s, &m, o); break;
        case PT_RUN: rc = on_run(d, s, &m, o, &b, st); break;
        case PT_VJP: rc = on_vjp(d, s, &m, &b); break;
        case PT_PING: {
            pt_part p = {m.data, m.len};
            rc = pt_server_reply(s, &m, PT_PONG, &p, 1);
            break;
        }
        case PT_MAKE_SAFE: {
            int r = device_make_safe(d);
            rc = r ? reply_error(s, &m, r, d->err[0] ? d->err : "make-safe failed")
                   : pt_server_reply(s, &m, PT_OK, NULL, 0);
            if (!r && o->verbose)
                slog(o, "device made safe on request");
            break;
        }
        default: {
            char t[64];
            snprintf(t, sizeof(t), "unknown request type 0x%02x", m.type);
            slog(o, "%s", t);
            rc = reply_error(s, &m, PATCTL_ERR_PROTOCOL, t);
        }
        }
        if (rc) {
            /* a reply that cannot be sent (peer gone) is not the server's end */
            slog(o, "cannot send a reply: %s", patctl_strerror(rc));
            rc = 0;
        }
    }
    device_make_safe(*dp);
    free(b.theta);
    free(b.x);
    free(b.y);
    free(b.gx);
    free(b.gt);
    return rc;
}
