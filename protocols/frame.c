/* The wire frame and message payload codecs (see frame.h).  Portable C99. */
#include "protocols/frame.h"

#include <string.h>

void pt_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

void pt_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

void pt_put_u64(uint8_t *p, uint64_t v)
{
    pt_put_u32(p, (uint32_t)v);
    pt_put_u32(p + 4, (uint32_t)(v >> 32));
}

uint16_t pt_get_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

uint32_t pt_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

uint64_t pt_get_u64(const uint8_t *p) { return (uint64_t)pt_get_u32(p) | ((uint64_t)pt_get_u32(p + 4) << 32); }

static int host_is_le(void)
{
    const uint32_t one = 1;
    uint8_t b;
    memcpy(&b, &one, 1);
    return b == 1;
}

void pt_f32_store(uint8_t *dst, const float *src, size_t n)
{
    if (host_is_le()) {
        if (n)
            memcpy(dst, src, 4 * n);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &src[i], 4);
        pt_put_u32(dst + 4 * i, u);
    }
}

void pt_f32_load(float *dst, const uint8_t *src, size_t n)
{
    if (host_is_le()) {
        if (n)
            memcpy(dst, src, 4 * n);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t u = pt_get_u32(src + 4 * i);
        memcpy(&dst[i], &u, 4);
    }
}

void pt_header_write(uint8_t *out, const pt_header *h)
{
    out[0] = PT_MAGIC0;
    out[1] = PT_MAGIC1;
    out[2] = PT_VERSION;
    out[3] = h->type;
    pt_put_u16(out + 4, h->flags);
    pt_put_u16(out + 6, h->frag);
    pt_put_u16(out + 8, h->nfrag);
    pt_put_u16(out + 10, 0);
    pt_put_u32(out + 12, h->seq);
    pt_put_u32(out + 16, h->offset);
    pt_put_u32(out + 20, h->len);
}

size_t pt_frame_seal(uint8_t *frame)
{
    uint32_t len = pt_get_u32(frame + 20);
    uint16_t flags = pt_get_u16(frame + 4);
    size_t covered = (flags & PT_F_HEADER_CRC) ? PT_HEADER_SIZE : PT_HEADER_SIZE + (size_t)len;
    pt_put_u32(frame + PT_HEADER_SIZE + len, pt_crc32(0, frame, covered));
    return PT_OVERHEAD + (size_t)len;
}

int pt_frame_check(const uint8_t *f, size_t n, pt_header *h, size_t max_payload)
{
    if (n < PT_OVERHEAD || f[0] != PT_MAGIC0 || f[1] != PT_MAGIC1)
        return PATCTL_ERR_FORMAT;
    if (f[2] < PT_VERSION_MIN || f[2] > PT_VERSION)
        return PATCTL_ERR_PROTOCOL;
    uint32_t len = pt_get_u32(f + 20);
    if ((size_t)len != n - PT_OVERHEAD || (max_payload && len > max_payload))
        return PATCTL_ERR_FORMAT;
    h->type = f[3];
    h->flags = pt_get_u16(f + 4);
    h->frag = pt_get_u16(f + 6);
    h->nfrag = pt_get_u16(f + 8);
    h->seq = pt_get_u32(f + 12);
    h->offset = pt_get_u32(f + 16);
    h->len = len;
    if (pt_get_u16(f + 10) != 0 || h->nfrag == 0 || h->frag >= h->nfrag ||
        (uint64_t)h->offset + len > 0xFFFFFFFFu)
        return PATCTL_ERR_FORMAT;
    size_t covered = (h->flags & PT_F_HEADER_CRC) ? PT_HEADER_SIZE : PT_HEADER_SIZE + (size_t)len;
    if (pt_crc32(0, f, covered) != pt_get_u32(f + PT_HEADER_SIZE + len))
        return PATCTL_ERR_FORMAT;
    return 0;
}

size_t pt_frame_encode(uint8_t *out, size_t cap, uint8_t type, uint16_t flags, uint32_t seq,
                       const uint8_t *payload, size_t len)
{
    if (len > 0xFFFFFFFFu - PT_OVERHEAD || cap < PT_OVERHEAD + len)
        return 0;
    pt_header h = {type, flags, 0, 1, seq, 0, (uint32_t)len};
    pt_header_write(out, &h);
    if (len)
        memmove(out + PT_HEADER_SIZE, payload, len);
    return pt_frame_seal(out);
}

/* ---- payloads ---- */

/* n bytes hold exactly head + 4 * count bytes (count computed in 64 bits). */
static int exact(size_t n, size_t head, uint64_t count)
{
    if (count > ((uint64_t)1 << 40))
        return 0;
    return (uint64_t)n == (uint64_t)head + 4u * count;
}

void pt_run_head(uint8_t *out, uint64_t id, uint32_t batch, uint32_t n_theta, uint32_t n_in,
                 uint32_t row0)
{
    pt_put_u64(out, id);
    pt_put_u32(out + 8, batch);
    pt_put_u32(out + 12, n_theta);
    pt_put_u32(out + 16, n_in);
    pt_put_u32(out + 20, row0);
}

int pt_run_parse(const uint8_t *p, size_t n, pt_run *r)
{
    if (n < PT_RUN_HEAD)
        return PATCTL_ERR_FORMAT;
    r->id = pt_get_u64(p);
    r->batch = pt_get_u32(p + 8);
    r->n_theta = pt_get_u32(p + 12);
    r->n_in = pt_get_u32(p + 16);
    r->row0 = pt_get_u32(p + 20);
    if (r->batch > 0x7FFFFFFFu ||
        !exact(n, PT_RUN_HEAD, (uint64_t)r->n_theta + (uint64_t)r->batch * r->n_in))
        return PATCTL_ERR_FORMAT;
    r->theta = p + PT_RUN_HEAD;
    r->x = r->theta + 4u * (size_t)r->n_theta;
    return 0;
}

void pt_result_head(uint8_t *out, uint64_t id, uint32_t batch, uint32_t n_out)
{
    pt_put_u64(out, id);
    pt_put_u32(out + 8, batch);
    pt_put_u32(out + 12, n_out);
}

int pt_result_parse(const uint8_t *p, size_t n, pt_result *r)
{
    if (n < PT_RESULT_HEAD)
        return PATCTL_ERR_FORMAT;
    r->id = pt_get_u64(p);
    r->batch = pt_get_u32(p + 8);
    r->n_out = pt_get_u32(p + 12);
    if (r->batch > 0x7FFFFFFFu || !exact(n, PT_RESULT_HEAD, (uint64_t)r->batch * r->n_out))
        return PATCTL_ERR_FORMAT;
    r->y = p + PT_RESULT_HEAD;
    return 0;
}

void pt_vjp_head(uint8_t *out, uint64_t id, uint32_t batch, uint32_t n_theta, uint32_t n_in,
                 uint32_t n_out, uint32_t want, uint32_t row0)
{
    pt_put_u64(out, id);
    pt_put_u32(out + 8, batch);
    pt_put_u32(out + 12, n_theta);
    pt_put_u32(out + 16, n_in);
    pt_put_u32(out + 20, n_out);
    pt_put_u32(out + 24, want);
    pt_put_u32(out + 28, row0);
}

int pt_vjp_parse(const uint8_t *p, size_t n, pt_vjp *v)
{
    if (n < PT_VJP_HEAD)
        return PATCTL_ERR_FORMAT;
    v->id = pt_get_u64(p);
    v->batch = pt_get_u32(p + 8);
    v->n_theta = pt_get_u32(p + 12);
    v->n_in = pt_get_u32(p + 16);
    v->n_out = pt_get_u32(p + 20);
    v->want = pt_get_u32(p + 24);
    v->row0 = pt_get_u32(p + 28);
    if ((v->want & ~3u) || v->batch > 0x7FFFFFFFu ||
        !exact(n, PT_VJP_HEAD, (uint64_t)v->n_theta + (uint64_t)v->batch * v->n_in +
                                   (uint64_t)v->batch * v->n_out))
        return PATCTL_ERR_FORMAT;
    v->theta = p + PT_VJP_HEAD;
    v->x = v->theta + 4u * (size_t)v->n_theta;
    v->gy = v->x + 4u * (size_t)v->batch * v->n_in;
    return 0;
}

void pt_gradient_head(uint8_t *out, uint64_t id, uint32_t batch, uint32_t n_in, uint32_t n_theta,
                      uint32_t have)
{
    pt_put_u64(out, id);
    pt_put_u32(out + 8, batch);
    pt_put_u32(out + 12, n_in);
    pt_put_u32(out + 16, n_theta);
    pt_put_u32(out + 20, have);
}

int pt_gradient_parse(const uint8_t *p, size_t n, pt_gradient *g)
{
    if (n < PT_GRADIENT_HEAD)
        return PATCTL_ERR_FORMAT;
    g->id = pt_get_u64(p);
    g->batch = pt_get_u32(p + 8);
    g->n_in = pt_get_u32(p + 12);
    g->n_theta = pt_get_u32(p + 16);
    g->have = pt_get_u32(p + 20);
    uint64_t nx = (g->have & 1u) ? (uint64_t)g->batch * g->n_in : 0;
    uint64_t nt = (g->have & 2u) ? (uint64_t)g->n_theta : 0;
    if ((g->have & ~3u) || g->batch > 0x7FFFFFFFu || !exact(n, PT_GRADIENT_HEAD, nx + nt))
        return PATCTL_ERR_FORMAT;
    g->gx = (g->have & 1u) ? p + PT_GRADIENT_HEAD : NULL;
    g->gtheta = (g->have & 2u) ? p + PT_GRADIENT_HEAD + 4u * (size_t)nx : NULL;
    return 0;
}

int pt_error_parse(const uint8_t *p, size_t n, int32_t *code, const char **text, size_t *text_len)
{
    if (n < PT_ERROR_HEAD)
        return PATCTL_ERR_FORMAT;
    *code = (int32_t)pt_get_u32(p);
    *text = (const char *)(p + PT_ERROR_HEAD);
    *text_len = n - PT_ERROR_HEAD;
    return 0;
}

const char *pt_type_name(uint8_t type)
{
    switch (type) {
    case PT_DESCRIBE: return "describe";
    case PT_DESCRIPTION: return "description";
    case PT_RUN: return "run";
    case PT_RESULT: return "result";
    case PT_ERROR: return "error";
    case PT_PING: return "ping";
    case PT_PONG: return "pong";
    case PT_MAKE_SAFE: return "make-safe";
    case PT_OK: return "ok";
    case PT_VJP: return "vjp";
    case PT_GRADIENT: return "gradient";
    case PT_NACK: return "nack";
    default: return "unknown";
    }
}
