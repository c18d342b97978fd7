/* libFuzzer target: the frame decoder, every payload parser, and the serial
 * link layer (device side) fed with arbitrary bytes.  Anything may come in;
 * nothing may crash, read out of bounds or hang. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "protocols/frame.h"
#include "protocols/slink.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int sink(void *user, const uint8_t *p, size_t n)
{
    (void)p;
    *(size_t *)user += n;
    return 0;
}

static void payloads(const uint8_t *p, size_t n)
{
    pt_run r;
    pt_result res;
    pt_vjp v;
    pt_gradient g;
    int32_t code;
    const char *text;
    size_t tl;
    volatile float acc = 0;
    float f[4];
    if (pt_run_parse(p, n, &r) == 0 && r.n_theta + (uint64_t)r.batch * r.n_in > 0) {
        /* the last float must be inside the payload */
        size_t nf = (size_t)r.n_theta + (size_t)r.batch * r.n_in;
        pt_f32_load(f, r.theta + 4 * (nf - 1), 1);
        acc += f[0];
    }
    if (pt_result_parse(p, n, &res) == 0 && res.batch && res.n_out) {
        pt_f32_load(f, res.y + 4 * ((size_t)res.batch * res.n_out - 1), 1);
        acc += f[0];
    }
    if (pt_vjp_parse(p, n, &v) == 0 && v.batch && v.n_out) {
        pt_f32_load(f, v.gy + 4 * ((size_t)v.batch * v.n_out - 1), 1);
        acc += f[0];
    }
    if (pt_gradient_parse(p, n, &g) == 0 && g.gtheta && g.n_theta) {
        pt_f32_load(f, g.gtheta + 4 * ((size_t)g.n_theta - 1), 1);
        acc += f[0];
    }
    if (pt_error_parse(p, n, &code, &text, &tl) == 0 && tl)
        acc += (float)text[tl - 1];
    (void)acc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* 1: as one frame */
    pt_header h;
    if (pt_frame_check(data, size, &h, 0) == 0)
        payloads(data + PT_HEADER_SIZE, h.len);
    /* 2: as a payload */
    payloads(data, size);
    /* 3: as bytes on a serial line, into a device-side and a controller-side
     * link (fragments, NACKs, retransmissions) */
    static uint8_t fin[256 + PT_OVERHEAD], fout[64 + PT_OVERHEAD], in[4096], have[16];
    static uint8_t reply[300];
    size_t written = 0;
    for (int side = 0; side < 2; side++) {
        pt_slink l;
        pt_slink_init(&l, side, 64, sink, &written, fin, sizeof(fin), fout, in, sizeof(in), have, sizeof(have));
        if (side == 0)
            pt_slink_expect(&l, 0x01020304u);
        else
            pt_slink_send(&l, PT_RESULT, 0x01020304u, reply, sizeof(reply)); /* something to retransmit */
        size_t off = 0;
        while (off < size) {
            int got = 0;
            off += pt_slink_feed(&l, data + off, size - off, &got);
            if (got && l.in_len)
                reply[0] ^= l.in[l.in_len - 1];
        }
        pt_slink_poll(&l, 0x01020304u);
    }
    return 0;
}
