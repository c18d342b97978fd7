/* COBS encoding and decoding (see cobs.h).  Portable C99. */
#include "protocols/cobs.h"

size_t cobs_encode(uint8_t *dst, const uint8_t *src, size_t n)
{
    size_t code_at = 0, out = 1;
    uint8_t code = 1;
    for (size_t i = 0; i < n; i++) {
        if (src[i] == 0) {
            dst[code_at] = code;
            code_at = out++;
            code = 1;
        } else {
            dst[out++] = src[i];
            if (++code == 0xFF) {
                dst[code_at] = code;
                code_at = out++;
                code = 1;
            }
        }
    }
    dst[code_at] = code;
    return out;
}

int cobs_decode(uint8_t *dst, size_t cap, const uint8_t *src, size_t n, size_t *out_len)
{
    size_t i = 0, out = 0;
    while (i < n) {
        uint8_t code = src[i++];
        if (code == 0)
            return -1;
        for (uint8_t k = 1; k < code; k++) {
            if (i >= n || src[i] == 0 || out >= cap)
                return -1;
            dst[out++] = src[i++];
        }
        if (code != 0xFF && i < n) {
            if (out >= cap)
                return -1;
            dst[out++] = 0;
        }
    }
    *out_len = out;
    return 0;
}

void cobs_rx_init(cobs_rx *r, uint8_t *buf, size_t cap)
{
    r->buf = buf;
    r->cap = cap;
    r->len = 0;
    r->code = 0;
    r->left = 0;
    r->started = 0;
    r->bad = 0;
    r->dropped = 0;
}

int cobs_rx_byte(cobs_rx *r, uint8_t b)
{
    if (b == 0) {
        int ok = r->started && !r->bad && r->left == 0;
        if (r->started && !ok)
            r->dropped++;
        r->started = 0;
        r->bad = 0;
        r->left = 0;
        if (!ok)
            r->len = 0;
        return ok;
    }
    if (!r->started) {
        r->started = 1;
        r->len = 0;
        r->code = b;
        r->left = (uint8_t)(b - 1);
        return 0;
    }
    if (r->bad)
        return 0;
    if (r->left == 0) {
        /* a new block: the previous one ended in an implied zero unless it
         * was a full 254-byte block */
        if (r->code != 0xFF) {
            if (r->len >= r->cap) {
                r->bad = 1;
                return 0;
            }
            r->buf[r->len++] = 0;
        }
        r->code = b;
        r->left = (uint8_t)(b - 1);
        return 0;
    }
    if (r->len >= r->cap) {
        r->bad = 1;
        return 0;
    }
    r->buf[r->len++] = b;
    r->left--;
    return 0;
}

void cobs_tx_init(cobs_tx *t, cobs_write_fn write, void *user)
{
    t->write = write;
    t->user = user;
    t->n = 0;
    t->err = 0;
    t->bytes = 0;
}

static void tx_flush(cobs_tx *t)
{
    t->block[0] = (uint8_t)(t->n + 1);
    if (!t->err) {
        int rc = t->write(t->user, t->block, (size_t)t->n + 1);
        if (rc)
            t->err = rc;
    }
    t->bytes += (uint64_t)t->n + 1;
    t->n = 0;
}

void cobs_tx_put(cobs_tx *t, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] == 0) {
            tx_flush(t);
        } else {
            t->block[1 + t->n++] = p[i];
            if (t->n == 254) {
                /* a full block: code 0xFF, no implied zero.  It must still be
                 * followed by a block, which the next put or end writes. */
                t->block[0] = 0xFF;
                if (!t->err) {
                    int rc = t->write(t->user, t->block, 255);
                    if (rc)
                        t->err = rc;
                }
                t->bytes += 255;
                t->n = 0;
            }
        }
    }
}

int cobs_tx_end(cobs_tx *t)
{
    tx_flush(t);
    static const uint8_t zero = 0;
    if (!t->err) {
        int rc = t->write(t->user, &zero, 1);
        if (rc)
            t->err = rc;
    }
    t->bytes += 1;
    int err = t->err;
    t->err = 0;
    return err;
}
