/* patctl device-side library (see patctl_mcu.h).  Portable C99, no malloc. */
#include "protocols/mcu/patctl_mcu.h"

#include <math.h>
#include <string.h>

static int aligned4(const void *p) { return ((uintptr_t)p & 3u) == 0; }

int pmcu_init(pmcu *m, const pmcu_config *cfg, const pmcu_buffers *b)
{
    memset(m, 0, sizeof(*m));
    if (!cfg || !b || !cfg->description_json || !cfg->run || !cfg->make_safe || !cfg->uart_read ||
        !cfg->uart_write || !b->frame_in || !b->frame_out || !b->rx || !b->tx || !b->have ||
        !aligned4(b->rx) || !aligned4(b->tx) || b->mtu < PT_SLINK_MIN_MTU || b->have_cap == 0 ||
        b->rx_cap < PT_RUN_HEAD + 4u * cfg->n_theta || b->tx_cap < strlen(cfg->description_json) + 16u ||
        cfg->n_in == 0 || cfg->n_out == 0)
        return PATCTL_ERR_ARG;
    m->cfg = *cfg;
    m->buf = *b;
    pt_slink_init(&m->link, 1, b->mtu, cfg->uart_write, cfg->user, b->frame_in, b->mtu + PT_OVERHEAD, b->frame_out,
                  b->rx, b->rx_cap, b->have, b->have_cap);
    return 0;
}

/* Little-endian wire floats <-> host floats, in place. */
static void swap_if_big_endian(uint8_t *p, uint32_t n)
{
    const uint32_t one = 1;
    uint8_t first;
    memcpy(&first, &one, 1);
    if (first == 1)
        return;
    for (uint32_t i = 0; i < n; i++, p += 4) {
        uint8_t t = p[0];
        p[0] = p[3];
        p[3] = t;
        t = p[1];
        p[1] = p[2];
        p[2] = t;
    }
}

static int send(pmcu *m, uint8_t type, uint32_t seq, uint32_t len)
{
    return pt_slink_send(&m->link, type, seq, m->buf.tx, len);
}

static int send_error(pmcu *m, uint32_t seq, int32_t code, const char *text)
{
    size_t n = strlen(text);
    if (n > m->buf.tx_cap - 4)
        n = m->buf.tx_cap - 4;
    pt_put_u32(m->buf.tx, (uint32_t)code);
    memcpy(m->buf.tx + 4, text, n);
    m->errors++;
    return send(m, PT_ERROR, seq, (uint32_t)(4 + n));
}

/* "...}" + ,"mtu":N} */
static int describe(pmcu *m, uint32_t seq)
{
    const char *j = m->cfg.description_json;
    size_t n = strlen(j);
    while (n > 0 && j[n - 1] != '}')
        n--;
    if (n == 0)
        return send_error(m, seq, PATCTL_ERR_FORMAT, "description is not a JSON object");
    char num[12];
    int k = 0;
    uint32_t v = m->buf.mtu;
    do {
        num[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    uint8_t *o = m->buf.tx;
    memcpy(o, j, n - 1);
    size_t at = n - 1;
    memcpy(o + at, ",\"mtu\":", 7);
    at += 7;
    while (k)
        o[at++] = (uint8_t)num[--k];
    o[at++] = '}';
    return send(m, PT_DESCRIPTION, seq, (uint32_t)at);
}

static int all_finite(const float *p, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (!isfinite(p[i]))
            return 0;
    return 1;
}

static int run(pmcu *m, uint32_t seq, uint32_t len)
{
    pt_run r;
    if (pt_run_parse(m->buf.rx, len, &r))
        return send_error(m, seq, PATCTL_ERR_FORMAT, "run: malformed payload");
    if (r.n_theta != m->cfg.n_theta || r.n_in != m->cfg.n_in)
        return send_error(m, seq, PATCTL_ERR_ARG, "run: shapes do not match the device");
    uint64_t need = PT_RESULT_HEAD + 4ull * r.batch * m->cfg.n_out;
    if (need > m->buf.tx_cap)
        return send_error(m, seq, PATCTL_ERR_ARG, "run: batch too large for this device");
    /* in place: the payload starts at a 4-aligned rx, floats at 24 */
    uint32_t nf = r.n_theta + r.batch * r.n_in;
    swap_if_big_endian(m->buf.rx + PT_RUN_HEAD, nf);
    const float *theta = (const float *)(const void *)(m->buf.rx + PT_RUN_HEAD);
    const float *x = theta + r.n_theta;
    if (!all_finite(theta, nf))
        return send_error(m, seq, PATCTL_ERR_NONFINITE, "run: NaN or Inf refused");
    float *y = (float *)(void *)(m->buf.tx + PT_RESULT_HEAD);
    int rc = m->cfg.run(m->cfg.user, r.id, r.batch, theta, x, y);
    if (rc)
        return send_error(m, seq, rc, "run: the device failed");
    pt_result_head(m->buf.tx, r.id, r.batch, m->cfg.n_out);
    swap_if_big_endian(m->buf.tx + PT_RESULT_HEAD, r.batch * m->cfg.n_out);
    return send(m, PT_RESULT, seq, (uint32_t)need);
}

static int handle(pmcu *m)
{
    pt_slink *l = &m->link;
    uint32_t seq = l->in_seq, len = l->in_len;
    m->requests++;
    switch (l->in_type) {
    case PT_DESCRIBE:
        return describe(m, seq);
    case PT_RUN:
        return run(m, seq, len);
    case PT_PING:
        if (len > m->buf.tx_cap)
            return send_error(m, seq, PATCTL_ERR_ARG, "ping: too long");
        memcpy(m->buf.tx, l->in, len);
        return send(m, PT_PONG, seq, len);
    case PT_MAKE_SAFE: {
        int rc = m->cfg.make_safe(m->cfg.user);
        return rc ? send_error(m, seq, rc, "make-safe failed") : send(m, PT_OK, seq, 0);
    }
    case PT_VJP:
        return send_error(m, seq, PATCTL_ERR_UNSUPPORTED, "vjp: hardware has no exact derivative");
    default:
        return send_error(m, seq, PATCTL_ERR_PROTOCOL, "unknown request type");
    }
}

int pmcu_poll(pmcu *m, uint32_t max_bytes)
{
    for (uint32_t k = 0; max_bytes == 0 || k < max_bytes; k++) {
        int c = m->cfg.uart_read(m->cfg.user);
        if (c < 0)
            return 0;
        uint8_t b = (uint8_t)c;
        int got = 0;
        pt_slink_feed(&m->link, &b, 1, &got);
        if (got) {
            int rc = handle(m);
            return rc ? rc : 1;
        }
    }
    return 0;
}
