/* protocols/: frame test vectors (byte-exact, as in PROTOCOL.md), CRC (zlib
 * and the device-side routine agree), COBS, the serial link layer over a
 * lossy in-memory line, the description JSON, ZeroMQ links (stale replies,
 * CURVE, the loopback rule). */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "protocols/cobs.h"
#include "protocols/desc_json.h"
#include "protocols/frame.h"
#include "protocols/link.h"
#include "protocols/slink.h"

/* the device-side CRC, renamed, to compare with zlib's in one binary */
#define PT_CRC32_NAME mcu_crc32
#include "protocols/mcu/crc32.c"

static int hexbytes(const char *hex, uint8_t *out)
{
    int n = 0;
    unsigned v;
    int k;
    while (sscanf(hex, " %2x%n", &v, &k) == 1) {
        out[n++] = (uint8_t)v;
        hex += k;
    }
    return n;
}

/* The vectors of PROTOCOL.md (made independently with Python's struct and
 * zlib.crc32). */
static const char *V_PING = "50 54 02 06 00 00 00 00 01 00 00 00 01 00 00 00 00 00 00 00 02 00 00 00 68 69 bf 04 cd 4b";
/* the same PING as a version-1 frame: still accepted */
static const char *V_PING_V1 = "50 54 01 06 00 00 00 00 01 00 00 00 01 00 00 00 00 00 00 00 02 00 00 00 68 69 97 ad d3 13";
static const char *V_RUN =
    "50 54 02 03 00 00 00 00 01 00 00 00 04 03 02 01 00 00 00 00 28 00 00 00 07 00 00 00 00 00 00 00 "
    "02 00 00 00 02 00 00 00 01 00 00 00 10 00 00 00 00 00 00 3f 00 00 80 bf 00 00 80 3e 00 00 00 40 "
    "e4 27 96 81";
static const char *V_RESULT =
    "50 54 02 04 00 00 00 00 01 00 00 00 04 03 02 01 00 00 00 00 18 00 00 00 07 00 00 00 00 00 00 00 "
    "02 00 00 00 01 00 00 00 00 00 c0 3f 00 00 00 be a2 c5 14 72";
static const char *V_ERROR =
    "50 54 02 05 00 00 00 00 01 00 00 00 09 00 00 00 00 00 00 00 0d 00 00 00 fa ff ff ff 74 69 6d 65 "
    "64 20 6f 75 74 36 f7 58 42";
static const char *V_MAKE_SAFE = "50 54 02 08 00 00 00 00 01 00 00 00 0a 00 00 00 00 00 00 00 00 00 00 00 41 c8 6f b1";
static const char *V_RUN_HDRCRC_TAIL = "e8 c3 96 23";
static const char *V_COBS_PING =
    "05 50 54 02 06 01 01 01 02 01 01 01 02 01 01 01 01 01 01 01 02 02 01 01 07 68 69 bf 04 cd 4b 00";

static void test_crc32(void **state)
{
    (void)state;
    const uint8_t *t = (const uint8_t *)"123456789";
    assert_int_equal(pt_crc32(0, t, 9), 0xCBF43926u);
    assert_int_equal(mcu_crc32(0, t, 9), 0xCBF43926u);
    uint8_t buf[1000];
    unsigned s = 1;
    for (int i = 0; i < 1000; i++)
        buf[i] = (uint8_t)((s = s * 1103515245u + 12345u) >> 16);
    for (size_t n = 0; n < 1000; n += 37) {
        assert_int_equal(pt_crc32(0, buf, n), mcu_crc32(0, buf, n));
        /* incremental == whole */
        assert_int_equal(pt_crc32(pt_crc32(0, buf, n / 2), buf + n / 2, n - n / 2), pt_crc32(0, buf, n));
    }
}

static void expect_bytes(const uint8_t *got, size_t n, const char *hex)
{
    uint8_t want[512];
    int wn = hexbytes(hex, want);
    assert_int_equal(n, (size_t)wn);
    assert_memory_equal(got, want, n);
}

static void test_frame_vectors(void **state)
{
    (void)state;
    uint8_t f[512], pay[64];
    size_t n = pt_frame_encode(f, sizeof(f), PT_PING, 0, 1, (const uint8_t *)"hi", 2);
    expect_bytes(f, n, V_PING);

    /* RUN: id 7, row0 16, B 2, theta [0.5, -1], n_in 1, x [0.25, 2] */
    float th[2] = {0.5f, -1.0f}, x[2] = {0.25f, 2.0f};
    pt_run_head(pay, 7, 2, 2, 1, 16);
    pt_f32_store(pay + PT_RUN_HEAD, th, 2);
    pt_f32_store(pay + PT_RUN_HEAD + 8, x, 2);
    n = pt_frame_encode(f, sizeof(f), PT_RUN, 0, 0x01020304u, pay, PT_RUN_HEAD + 16);
    expect_bytes(f, n, V_RUN);
    pt_header h;
    assert_int_equal(pt_frame_check(f, n, &h, 0), 0);
    assert_int_equal(h.type, PT_RUN);
    assert_int_equal(h.seq, 0x01020304u);
    pt_run r;
    assert_int_equal(pt_run_parse(f + PT_HEADER_SIZE, h.len, &r), 0);
    assert_int_equal(r.id, 7);
    assert_int_equal(r.batch, 2);
    assert_int_equal(r.row0, 16);
    float back[2];
    pt_f32_load(back, r.x, 2);
    assert_true(back[0] == 0.25f && back[1] == 2.0f);
    /* every single changed byte is caught (magic/version/len/CRC) */
    for (size_t i = 0; i < n; i++) {
        uint8_t save = f[i];
        for (int bitn = 0; bitn < 8; bitn++) {
            f[i] = (uint8_t)(save ^ (1u << bitn));
            assert_int_not_equal(pt_frame_check(f, n, &h, 0), 0);
        }
        f[i] = save;
    }
    /* the header-only CRC variant differs in flags and CRC only */
    n = pt_frame_encode(f, sizeof(f), PT_RUN, PT_F_HEADER_CRC, 0x01020304u, pay, PT_RUN_HEAD + 16);
    expect_bytes(f + n - 4, 4, V_RUN_HDRCRC_TAIL);
    assert_int_equal(pt_frame_check(f, n, &h, 0), 0);
    f[PT_HEADER_SIZE + 3] ^= 1; /* payload not covered... */
    assert_int_equal(pt_frame_check(f, n, &h, 0), 0);
    f[12] ^= 1; /* ...the header is */
    assert_int_not_equal(pt_frame_check(f, n, &h, 0), 0);

    float y[2] = {1.5f, -0.125f};
    pt_result_head(pay, 7, 2, 1);
    pt_f32_store(pay + PT_RESULT_HEAD, y, 2);
    n = pt_frame_encode(f, sizeof(f), PT_RESULT, 0, 0x01020304u, pay, PT_RESULT_HEAD + 8);
    expect_bytes(f, n, V_RESULT);

    pt_put_u32(pay, (uint32_t)PATCTL_ERR_TIMEOUT);
    memcpy(pay + 4, "timed out", 9);
    n = pt_frame_encode(f, sizeof(f), PT_ERROR, 0, 9, pay, 13);
    expect_bytes(f, n, V_ERROR);
    int32_t code;
    const char *text;
    size_t tl;
    assert_int_equal(pt_error_parse(f + PT_HEADER_SIZE, 13, &code, &text, &tl), 0);
    assert_int_equal(code, PATCTL_ERR_TIMEOUT);
    assert_int_equal(tl, 9);

    n = pt_frame_encode(f, sizeof(f), PT_MAKE_SAFE, 0, 10, NULL, 0);
    expect_bytes(f, n, V_MAKE_SAFE);

    /* a version-1 frame (same layout) is still accepted */
    uint8_t ping[64];
    int pn = hexbytes(V_PING_V1, ping);
    assert_int_equal(pt_frame_check(ping, (size_t)pn, &h, 0), 0);
    assert_int_equal(h.type, PT_PING);
    /* a frame of another version is a protocol error, not garbage */
    pn = hexbytes(V_PING, ping);
    ping[2] = 3;
    assert_int_equal(pt_frame_check(ping, (size_t)pn, &h, 0), PATCTL_ERR_PROTOCOL);
    ping[2] = 0;
    assert_int_equal(pt_frame_check(ping, (size_t)pn, &h, 0), PATCTL_ERR_PROTOCOL);
    /* short or oversized */
    assert_int_equal(pt_frame_check(ping, 10, &h, 0), PATCTL_ERR_FORMAT);
    pn = hexbytes(V_PING, ping);
    assert_int_equal(pt_frame_check(ping, (size_t)pn, &h, 1), PATCTL_ERR_FORMAT);
    assert_int_equal(pt_frame_encode(f, 20, PT_PING, 0, 1, NULL, 0), 0);
}

static void test_payload_sizes(void **state)
{
    (void)state;
    uint8_t p[256];
    memset(p, 0, sizeof(p));
    pt_run r;
    pt_run_head(p, 1, 3, 2, 4, 0); /* needs 24 + 4 * (2 + 12) = 80 bytes */
    assert_int_equal(pt_run_parse(p, 80, &r), 0);
    assert_int_not_equal(pt_run_parse(p, 79, &r), 0);
    assert_int_not_equal(pt_run_parse(p, 84, &r), 0);
    pt_run_head(p, 1, 0x40000000u, 0, 0x40000000u, 0); /* 2^60 floats: never "fits" */
    assert_int_not_equal(pt_run_parse(p, 24, &r), 0);
    pt_run_head(p, 1, 0, 0, 5, 0);
    assert_int_equal(pt_run_parse(p, 24, &r), 0); /* B = 0: theta only (here empty) */
    p[20] = 1; /* row0 (version 2) */
    assert_int_equal(pt_run_parse(p, 24, &r), 0);
    assert_int_equal(r.row0, 1);
    pt_result res;
    pt_result_head(p, 1, 2, 3);
    assert_int_equal(pt_result_parse(p, 16 + 24, &res), 0);
    assert_int_not_equal(pt_result_parse(p, 16 + 20, &res), 0);
    pt_vjp v;
    pt_vjp_head(p, 1, 2, 3, 1, 1, 3, 70000);
    assert_int_equal(pt_vjp_parse(p, 32 + 4 * (3 + 2 + 2), &v), 0);
    assert_int_equal(v.row0, 70000);
    pt_vjp_head(p, 1, 2, 3, 1, 1, 4, 0); /* unknown want bit */
    assert_int_not_equal(pt_vjp_parse(p, 32 + 4 * 7, &v), 0);
    pt_gradient g;
    pt_gradient_head(p, 1, 2, 1, 3, 2); /* gtheta only */
    assert_int_equal(pt_gradient_parse(p, 24 + 12, &g), 0);
    assert_null(g.gx);
    assert_non_null(g.gtheta);
}

/* ---- COBS ---- */

static void fill(uint8_t *b, size_t n, unsigned seed, int zeros)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        b[i] = (uint8_t)(seed >> 16);
        if (zeros && (seed >> 8) % 7 == 0)
            b[i] = 0;
        if (!zeros && b[i] == 0)
            b[i] = 1;
    }
}

typedef struct {
    uint8_t buf[4096];
    size_t n;
} sinkbuf;

static int sink_write(void *user, const uint8_t *p, size_t n)
{
    sinkbuf *s = user;
    assert_true(s->n + n <= sizeof(s->buf));
    memcpy(s->buf + s->n, p, n);
    s->n += n;
    return 0;
}

static void test_cobs(void **state)
{
    (void)state;
    uint8_t ping[64], enc[128];
    int pn = hexbytes(V_PING, ping);
    size_t en = cobs_encode(enc, ping, (size_t)pn);
    enc[en++] = 0;
    expect_bytes(enc, en, V_COBS_PING);

    static const size_t lens[] = {0, 1, 2, 253, 254, 255, 256, 508, 509, 1000};
    uint8_t src[1000], e[1100], d[1000], rxbuf[1000];
    for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++)
        for (int zeros = 0; zeros < 2; zeros++) {
            size_t n = lens[li];
            fill(src, n, (unsigned)(n * 3 + (size_t)zeros), zeros);
            size_t m = cobs_encode(e, src, n);
            assert_true(m <= COBS_MAX_ENCODED(n));
            assert_null(memchr(e, 0, m));
            size_t dn;
            assert_int_equal(cobs_decode(d, sizeof(d), e, m, &dn), 0);
            assert_int_equal(dn, n);
            assert_memory_equal(d, src, n);
            /* the streaming encoder writes the same bytes + delimiter */
            sinkbuf sb = {.n = 0};
            cobs_tx tx;
            cobs_tx_init(&tx, sink_write, &sb);
            cobs_tx_put(&tx, src, n / 3);
            cobs_tx_put(&tx, src + n / 3, n - n / 3);
            assert_int_equal(cobs_tx_end(&tx), 0);
            assert_int_equal(sb.n, m + 1);
            assert_memory_equal(sb.buf, e, m);
            /* the streaming decoder after garbage resynchronises */
            cobs_rx rx;
            cobs_rx_init(&rx, rxbuf, sizeof(rxbuf));
            const uint8_t junk[] = {7, 1, 2, 0, 0, 3};
            int got = 0;
            for (size_t i = 0; i < sizeof(junk); i++)
                got += cobs_rx_byte(&rx, junk[i]);
            assert_int_equal(got, 0); /* the 7-block ends early: dropped */
            assert_int_equal(rx.dropped, 1);
            cobs_rx_byte(&rx, 0); /* end the junk packet "3" */
            for (size_t i = 0; i < sb.n; i++)
                got += cobs_rx_byte(&rx, sb.buf[i]);
            assert_int_equal(got, 1);
            assert_int_equal(rx.len, n);
            assert_memory_equal(rx.buf, src, n);
        }
    /* decode rejects a zero inside, a block running past the end, overflow */
    const uint8_t bad1[] = {3, 1, 0}, bad2[] = {5, 1, 2};
    size_t dn;
    assert_int_equal(cobs_decode(d, sizeof(d), bad1, 3, &dn), -1);
    assert_int_equal(cobs_decode(d, sizeof(d), bad2, 3, &dn), -1);
    fill(src, 100, 5, 1);
    size_t m = cobs_encode(e, src, 100);
    assert_int_equal(cobs_decode(d, 99, e, m, &dn), -1);
    /* streaming: a packet longer than the buffer is dropped, the next one kept */
    cobs_rx rx;
    cobs_rx_init(&rx, rxbuf, 50);
    int got = 0;
    for (size_t i = 0; i < m; i++)
        got += cobs_rx_byte(&rx, e[i]);
    got += cobs_rx_byte(&rx, 0);
    assert_int_equal(got, 0);
    assert_int_equal(rx.dropped, 1);
    m = cobs_encode(e, src, 20);
    for (size_t i = 0; i < m; i++)
        got += cobs_rx_byte(&rx, e[i]);
    got += cobs_rx_byte(&rx, 0);
    assert_int_equal(got, 1);
    assert_int_equal(rx.len, 20);
}

/* ---- the serial link layer over a lossy in-memory line ---- */

typedef struct {
    uint8_t *buf;
    size_t cap, head, tail;
    double rate;          /* byte corruption probability */
    uint64_t rng;
    uint64_t corrupted, bytes;
} pipe_t;

static double urand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (double)(*s >> 11) * (1.0 / 9007199254740992.0);
}

static int pipe_write(void *user, const uint8_t *p, size_t n)
{
    pipe_t *q = user;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = p[i];
        if (q->rate > 0 && urand(&q->rng) < q->rate) {
            b ^= (uint8_t)(1 + (int)(urand(&q->rng) * 255));
            q->corrupted++;
        }
        assert_true(q->tail < q->cap);
        q->buf[q->tail++] = b;
        q->bytes++;
    }
    return 0;
}

typedef struct {
    pt_slink l;
    uint8_t fin[2048 + PT_OVERHEAD], fout[2048 + PT_OVERHEAD], in[70000], have[1024];
} end_t;

/* Deliver up to `chunk` bytes from q into e; 1 if a message completed. */
static int deliver(pipe_t *q, end_t *e, size_t chunk)
{
    size_t n = q->tail - q->head;
    if (n > chunk)
        n = chunk;
    int got = 0;
    size_t used = pt_slink_feed(&e->l, q->buf + q->head, n, &got);
    q->head += used;
    if (q->head == q->tail)
        q->head = q->tail = 0;
    return got;
}

static void run_link(double rate, uint32_t mtu, int messages, int max_len)
{
    static pipe_t up, down;
    static end_t ctl, dev;
    static uint8_t req[70000], rep[70000];
    memset(&up, 0, sizeof(up));
    memset(&down, 0, sizeof(down));
    up.cap = down.cap = 1u << 24;
    up.buf = malloc(up.cap);
    down.buf = malloc(down.cap);
    up.rate = down.rate = rate;
    up.rng = 12345, down.rng = 999;
    pt_slink_init(&ctl.l, 0, mtu, pipe_write, &up, ctl.fin, sizeof(ctl.fin), ctl.fout, ctl.in, sizeof(ctl.in),
                  ctl.have, sizeof(ctl.have));
    pt_slink_init(&dev.l, 1, mtu, pipe_write, &down, dev.fin, sizeof(dev.fin), dev.fout, dev.in, sizeof(dev.in),
                  dev.have, sizeof(dev.have));
    long runs = 0, polls = 0;
    uint32_t seq = 1000;
    for (int k = 0; k < messages; k++, seq++) {
        size_t n = (size_t)((k * 7919) % max_len);
        fill(req, n, (unsigned)k, 1);
        pt_slink_expect(&ctl.l, seq);
        assert_int_equal(pt_slink_send(&ctl.l, PT_RUN, seq, req, (uint32_t)n), 0);
        int done = 0, rounds = 0;
        while (!done) {
            assert_true(++rounds < 10000);
            int progressed = 0;
            while (up.tail > up.head) {
                progressed = 1;
                if (deliver(&up, &dev, 97)) {
                    /* the device "runs" it once and answers: the bytes reversed */
                    assert_int_equal(dev.l.in_seq, seq);
                    assert_int_equal(dev.l.in_len, n);
                    assert_memory_equal(dev.l.in, req, n);
                    runs++;
                    for (size_t i = 0; i < n; i++)
                        rep[i] = req[n - 1 - i];
                    assert_int_equal(pt_slink_send(&dev.l, PT_RESULT, seq, rep, (uint32_t)n), 0);
                }
            }
            while (down.tail > down.head && !done) {
                progressed = 1;
                if (deliver(&down, &ctl, 61)) {
                    assert_int_equal(ctl.l.in_seq, seq);
                    assert_int_equal(ctl.l.in_type, PT_RESULT);
                    assert_int_equal(ctl.l.in_len, n);
                    for (size_t i = 0; i < n; i++)
                        assert_int_equal(ctl.l.in[i], req[n - 1 - i]);
                    done = 1;
                }
            }
            down.head = down.tail = 0; /* what is left after the reply is moot */
            if (!done && !progressed) {
                /* silence on the line: the controller asks */
                polls++;
                pt_slink_poll(&ctl.l, seq);
            }
        }
        up.head = up.tail = 0;
    }
    printf("  rate %.3f mtu %u: %d messages, %ld runs, %ld polls, %llu corrupted bytes of %llu, "
           "%llu bad frames, %llu fragments retransmitted\n",
           rate, mtu, messages, runs, polls, (unsigned long long)(up.corrupted + down.corrupted),
           (unsigned long long)(up.bytes + down.bytes),
           (unsigned long long)(ctl.l.st.bad_frames + dev.l.st.bad_frames),
           (unsigned long long)(ctl.l.st.retransmitted + dev.l.st.retransmitted));
    assert_int_equal(runs, messages); /* every request ran exactly once */
    if (rate > 0) {
        assert_true(up.corrupted + down.corrupted > 0);
        assert_true(ctl.l.st.retransmitted + dev.l.st.retransmitted > 0);
    }
    free(up.buf);
    free(down.buf);
}

static void test_slink_clean(void **state)
{
    (void)state;
    run_link(0.0, 256, 60, 5000);
    run_link(0.0, 16, 10, 300);
}

static void test_slink_noisy(void **state)
{
    (void)state;
    run_link(0.01, 64, 200, 2000);   /* 1 % of bytes corrupted both ways */
    run_link(0.02, 16, 40, 600);   /* 2 %, tiny frames */
}

/* ---- description JSON ---- */

static struct patctl_device_desc sample_desc(void)
{
    struct patctl_device_desc d;
    memset(&d, 0, sizeof(d));
    snprintf(d.model, sizeof(d.model), "oscillators");
    snprintf(d.about, sizeof(d.about), "8 coupled \"oscillators\"\n(simulated) \xc3\xa9");
    d.n_in = 8;
    d.n_out = 6;
    snprintf(d.in_unit, sizeof(d.in_unit), "rad");
    snprintf(d.out_unit, sizeof(d.out_unit), "V");
    d.in_lo = -10.0f;
    d.in_hi = 0.1f;
    d.n_blocks = 2;
    d.blocks[0] = (struct patctl_param_block){.name = "C", .unit = "1/s^2", .about = "coupling", .rows = 8, .cols = 8,
                                              .lo = -4, .hi = 4, .max_step = 0.1f, .safe = 0, .init_lo = -0.35355339f,
                                              .init_hi = 0.35355339f};
    d.blocks[1] = (struct patctl_param_block){.name = "e", .unit = "rad/s^2", .rows = 8, .cols = 1, .lo = -1e-7f,
                                              .hi = 3.4e38f, .safe = 1.0f / 3.0f};
    d.flags = PATCTL_DEV_SIMULATED | PATCTL_DEV_HAS_VJP;
    return d;
}

static void test_desc_json(void **state)
{
    (void)state;
    struct patctl_device_desc d = sample_desc(), back;
    pt_desc_extra ex = {.driver = "oscillators", .mtu = 512, .max_message = 1000}, ex2;
    char *j = pt_desc_to_json(&d, &ex);
    assert_non_null(j);
    char err[256];
    assert_int_equal(pt_desc_from_json(j, strlen(j), &back, &ex2, err, sizeof(err)), 0);
    assert_memory_equal(&d, &back, sizeof(d)); /* every float exact */
    assert_string_equal(ex2.driver, "oscillators");
    assert_int_equal(ex2.mtu, 512);
    free(j);

    static const struct {
        const char *json, *needle;
    } bad[] = {
        {"[]", "not a JSON object"},
        {"{\"model\":\"m\",\"n_out\":1,\"in_lo\":0,\"in_hi\":1,\"blocks\":[]}", "'n_in' is missing"},
        {"{\"model\":\"m\",\"n_in\":\"8\",\"n_out\":1,\"in_lo\":0,\"in_hi\":1,\"blocks\":[]}", "'n_in' must be a finite number"},
        {"{\"model\":\"m\",\"n_in\":1.5,\"n_out\":1,\"in_lo\":0,\"in_hi\":1,\"blocks\":[]}", "'n_in' must be an integer"},
        {"{\"model\":\"m\",\"n_in\":0,\"n_out\":1,\"in_lo\":0,\"in_hi\":1,\"blocks\":[]}", "'n_in' is out of range"},
        {"{\"model\":\"m\",\"n_in\":1,\"n_out\":1,\"in_lo\":1e999,\"in_hi\":1,\"blocks\":[]}", "'in_lo' must be a finite"},
        {"{\"model\":\"m\",\"n_in\":1,\"n_out\":1,\"in_lo\":2,\"in_hi\":1,\"blocks\":[]}", "'in_lo' exceeds in_hi"},
        {"{\"model\":\"mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm\",\"n_in\":1,\"n_out\":1,\"in_lo\":0,"
         "\"in_hi\":1,\"blocks\":[]}", "'model' is too long"},
        {"{\"model\":\"m\",\"n_in\":1,\"n_out\":1,\"in_lo\":0,\"in_hi\":1}", "'blocks' must be an array"},
        {"{\"model\":\"m\",\"n_in\":1,\"n_out\":1,\"in_lo\":0,\"in_hi\":1,\"blocks\":[{\"name\":\"w\",\"rows\":1,"
         "\"cols\":1,\"lo\":1,\"hi\":0,\"safe\":0}]}", "blocks[0] 'lo/hi/safe/max_step' are inconsistent"},
        {"{\"model\":\"m\",\"n_in\":1,\"n_out\":1,\"in_lo\":0,\"in_hi\":1,\"blocks\":[{\"rows\":1}]}", "blocks[0] 'name' is missing"},
        {"{\"model\":\"m\",\"n_in\":1,\"n_out\":1,\"in_lo\":0,\"in_hi\":1,\"blocks\":[1,2,3,4,5,6,7,8,9]}",
         "more entries than patctl supports"},
        {"{\"model\":\"m\",\"n_in\":1,\"n_out\":1,\"in_lo\":0,\"in_hi\":1,\"simulated\":1,\"blocks\":[]}", "'simulated' must be true or false"},
        {"{\"protocol\":3,\"model\":\"m\",\"n_in\":1,\"n_out\":1,\"in_lo\":0,\"in_hi\":1,\"blocks\":[]}", "'protocol' is out of range"},
        {"{\"model\":\"m\",\"n_in\":1,", "not a JSON object"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(pt_desc_from_json(bad[i].json, strlen(bad[i].json), &back, NULL, err, sizeof(err)),
                         PATCTL_ERR_FORMAT);
        if (!strstr(err, bad[i].needle))
            fail_msg("case %zu: error '%s' lacks '%s'", i, err, bad[i].needle);
    }
    /* not NUL-terminated input is read only up to n */
    const char *ok = "{\"model\":\"m\",\"n_in\":1,\"n_out\":1,\"in_lo\":0,\"in_hi\":1,\"blocks\":[]}XXXX";
    assert_int_equal(pt_desc_from_json(ok, strlen(ok) - 4, &back, NULL, err, sizeof(err)), 0);
}

/* ---- ZeroMQ links ---- */

typedef struct {
    pt_server *s;
    int requests;      /* answer this many, then stop */
    int delay_first_ms;
} echo_srv;

static void *echo_main(void *arg)
{
    echo_srv *e = arg;
    for (int k = 0; k < e->requests; k++) {
        pt_msg m;
        if (pt_server_recv(e->s, 5000, &m))
            break;
        if (k == 0 && e->delay_first_ms) {
            struct timespec ts = {0, (long)e->delay_first_ms * 1000000L};
            nanosleep(&ts, NULL);
        }
        pt_part p = {m.data, m.len};
        pt_server_reply(e->s, &m, PT_PONG, &p, 1);
    }
    return NULL;
}

static void test_zmq_request_reply_and_stale(void **state)
{
    (void)state;
    char err[256], addr[128];
    snprintf(addr, sizeof(addr), "ipc:///tmp/patctl-test-%d.ipc", (int)getpid());
    pt_server *s;
    pt_client *c;
    assert_int_equal(pt_server_open(&s, addr, NULL, err, sizeof(err)), 0);
    assert_int_equal(pt_client_open(&c, addr, NULL, err, sizeof(err)), 0);
    echo_srv e = {s, 3, 300};
    pthread_t t;
    pthread_create(&t, NULL, echo_main, &e);
    uint32_t s1, s2, s3;
    pt_msg rep;
    pt_part p1 = {"first", 5}, p2 = {"second", 6};
    /* the first reply comes after 300 ms: give up at 100 ms */
    assert_int_equal(pt_client_send(c, PT_PING, &p1, 1, &s1), 0);
    assert_int_equal(pt_client_wait(c, s1, 100, &rep), PATCTL_ERR_TIMEOUT);
    /* the next request must get its own reply, never the late "first" */
    assert_int_equal(pt_client_send(c, PT_PING, &p2, 1, &s2), 0);
    assert_int_equal(pt_client_wait(c, s2, 3000, &rep), 0);
    assert_int_equal(rep.seq, s2);
    assert_int_equal(rep.len, 6);
    assert_memory_equal(rep.data, "second", 6);
    assert_int_equal(pt_client_stats(c)->stale, 1);
    /* full-CRC frames work too */
    c->o.header_crc = 0;
    assert_int_equal(pt_client_send(c, PT_PING, &p1, 1, &s3), 0);
    assert_int_equal(pt_client_wait(c, s3, 3000, &rep), 0);
    assert_int_equal(rep.flags & PT_F_HEADER_CRC, 0);
    pthread_join(t, NULL);
    pt_client_close(&c);
    pt_server_close(&s);
    assert_null(c);
    unlink(addr + 6);
}

static void test_address_rule(void **state)
{
    (void)state;
    static const struct {
        const char *a;
        int local;
    } t[] = {
        {"ipc:///tmp/x", 1}, {"inproc://x", 1}, {"tcp://127.0.0.1:5555", 1}, {"tcp://127.9.8.7:1", 1},
        {"tcp://localhost:5555", 1}, {"tcp://[::1]:5555", 1}, {"tcp://*:5555", 0}, {"tcp://0.0.0.0:5555", 0},
        {"tcp://10.0.0.1:5555", 0}, {"tcp://127.0.0.1.evil.com:5555", 0}, {"tcp://eth0:5555", 0},
        {"tcp://example.org:1", 0}, {"udp://127.0.0.1:1", 0},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (pt_address_is_local(t[i].a) != t[i].local)
            fail_msg("%s: expected local=%d", t[i].a, t[i].local);
    /* serving a non-loopback address without CURVE is refused before binding */
    char err[256];
    pt_server *s = NULL;
    assert_int_equal(pt_server_open(&s, "tcp://0.0.0.0:0", NULL, err, sizeof(err)), PATCTL_ERR_CONFIG);
    assert_non_null(strstr(err, "CURVE"));
    assert_null(s);
}

static void test_curve(void **state)
{
    (void)state;
    pt_link_opts so, co;
    pt_link_opts_default(&so);
    char err[256];
    if (pt_curve_keypair(so.curve_public, so.curve_secret)) {
        skip();
        return;
    }
    pt_server *s;
    assert_int_equal(pt_server_open(&s, "tcp://127.0.0.1:*", &so, err, sizeof(err)), 0);
    const char *addr = pt_server_address(s);
    echo_srv e = {s, 1, 0};
    pthread_t t;
    pthread_create(&t, NULL, echo_main, &e);
    pt_part p = {"secret data", 11};
    pt_msg rep;
    uint32_t seq;
    /* 1: without CURVE: the handshake fails, nothing comes back */
    pt_client *c;
    assert_int_equal(pt_client_open(&c, addr, NULL, err, sizeof(err)), 0);
    int rc = pt_client_send(c, PT_PING, &p, 1, &seq);
    if (rc == 0)
        rc = pt_client_wait(c, seq, 300, &rep);
    assert_int_equal(rc, PATCTL_ERR_TIMEOUT);
    pt_client_close(&c);
    /* 2: with a wrong server key: nothing either */
    pt_link_opts_default(&co);
    char other_pub[41], other_sec[41];
    assert_int_equal(pt_curve_keypair(other_pub, other_sec), 0);
    memcpy(co.curve_server_public, other_pub, 41);
    assert_int_equal(pt_client_open(&c, addr, &co, err, sizeof(err)), 0);
    rc = pt_client_send(c, PT_PING, &p, 1, &seq);
    if (rc == 0)
        rc = pt_client_wait(c, seq, 300, &rep);
    assert_int_equal(rc, PATCTL_ERR_TIMEOUT);
    pt_client_close(&c);
    /* 3: the right key: the data comes back */
    pt_link_opts_default(&co);
    memcpy(co.curve_server_public, so.curve_public, 41);
    assert_int_equal(pt_client_open(&c, addr, &co, err, sizeof(err)), 0);
    assert_int_equal(pt_client_send(c, PT_PING, &p, 1, &seq), 0);
    assert_int_equal(pt_client_wait(c, seq, 3000, &rep), 0);
    assert_int_equal(rep.len, 11);
    assert_memory_equal(rep.data, "secret data", 11);
    pthread_join(t, NULL);
    assert_int_equal(e.requests, 1);
    pt_client_close(&c);
    pt_server_close(&s);

    /* key files as `patctl keygen` writes them */
    char path[64];
    snprintf(path, sizeof(path), "/tmp/patctl-key-%d", (int)getpid());
    FILE *f = fopen(path, "w");
    fprintf(f, "# test\npublic = %s\nsecret = %s\n", so.curve_public, so.curve_secret);
    fclose(f);
    char pub[41], sec[41];
    assert_int_equal(pt_curve_read(path, pub, sec, err, sizeof(err)), 0);
    assert_string_equal(pub, so.curve_public);
    assert_string_equal(sec, so.curve_secret);
    f = fopen(path, "w");
    fprintf(f, "public = tooshort\n");
    fclose(f);
    assert_int_equal(pt_curve_read(path, pub, NULL, err, sizeof(err)), PATCTL_ERR_FORMAT);
    assert_non_null(strstr(err, ":1:"));
    unlink(path);
}

/* The allowlist file of `serve --allow-keys`: bad files are clear errors
 * naming file and line; the ZAP handler starts and stops with its servers. */
static int open_allow(pt_server **s, const pt_link_opts *base, const char *path, const char *text, char *err,
                      size_t errlen)
{
    if (text) {
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(text, f);
        fclose(f);
    }
    pt_link_opts o = *base;
    snprintf(o.curve_allow_file, sizeof(o.curve_allow_file), "%s", path);
    return pt_server_open(s, "tcp://127.0.0.1:*", &o, err, errlen);
}

static void test_allow_keys_file(void **state)
{
    (void)state;
    pt_link_opts so;
    pt_link_opts_default(&so);
    char err[512], pub[41], sec[41], line[256], path[64];
    if (pt_curve_keypair(so.curve_public, so.curve_secret)) {
        skip();
        return;
    }
    assert_int_equal(pt_curve_keypair(pub, sec), 0);
    snprintf(path, sizeof(path), "/tmp/patctl-allow-%d", (int)getpid());
    pt_server *s = NULL, *s2 = NULL;
    /* a malformed third line */
    snprintf(line, sizeof(line), "# ok\n%s\nnot-a-key\n", pub);
    assert_int_equal(open_allow(&s, &so, path, line, err, sizeof(err)), PATCTL_ERR_FORMAT);
    printf("  %s\n", err);
    char want[96];
    snprintf(want, sizeof(want), "%s:3:", path);
    assert_non_null(strstr(err, want));
    assert_null(s);
    /* a key with trailing garbage; a 39-character key; a secret line */
    snprintf(line, sizeof(line), "%s extra\n", pub);
    assert_int_equal(open_allow(&s, &so, path, line, err, sizeof(err)), PATCTL_ERR_FORMAT);
    assert_non_null(strstr(err, ":1:"));
    snprintf(line, sizeof(line), "\n%.39s\n", pub);
    assert_int_equal(open_allow(&s, &so, path, line, err, sizeof(err)), PATCTL_ERR_FORMAT);
    assert_non_null(strstr(err, ":2:"));
    snprintf(line, sizeof(line), "secret = %s\n", sec);
    assert_int_equal(open_allow(&s, &so, path, line, err, sizeof(err)), PATCTL_ERR_FORMAT);
    /* a commented-out key is a comment: no keys left is an error too */
    snprintf(line, sizeof(line), "#%s\n# %s\n", pub, pub);
    assert_int_equal(open_allow(&s, &so, path, line, err, sizeof(err)), PATCTL_ERR_FORMAT);
    assert_non_null(strstr(err, "no keys"));
    /* a missing file names it */
    unlink(path);
    assert_int_equal(open_allow(&s, &so, path, NULL, err, sizeof(err)), PATCTL_ERR_NOT_FOUND);
    assert_non_null(strstr(err, path));
    /* an allowlist without CURVE keys, or on a serial line: refused */
    snprintf(line, sizeof(line), "%s\n", pub);
    pt_link_opts plain;
    pt_link_opts_default(&plain);
    assert_int_equal(open_allow(&s, &plain, path, line, err, sizeof(err)), PATCTL_ERR_CONFIG);
    assert_non_null(strstr(err, "CURVE"));
    pt_link_opts ser = so;
    snprintf(ser.curve_allow_file, sizeof(ser.curve_allow_file), "%s", path);
    assert_int_equal(pt_server_open(&s, "serial:/dev/null", &ser, err, sizeof(err)), PATCTL_ERR_CONFIG);
    /* two servers share the handler; it stops with the last and starts again */
    for (int round = 0; round < 2; round++) {
        assert_int_equal(open_allow(&s, &so, path, line, err, sizeof(err)), 0);
        assert_int_equal(open_allow(&s2, &so, path, NULL, err, sizeof(err)), 0);
        pt_server_close(&s);
        pt_server_close(&s2);
    }
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32),
        cmocka_unit_test(test_frame_vectors),
        cmocka_unit_test(test_payload_sizes),
        cmocka_unit_test(test_cobs),
        cmocka_unit_test(test_slink_clean),
        cmocka_unit_test(test_slink_noisy),
        cmocka_unit_test(test_desc_json),
        cmocka_unit_test(test_zmq_request_reply_and_stale),
        cmocka_unit_test(test_address_rule),
        cmocka_unit_test(test_curve),
        cmocka_unit_test(test_allow_keys_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
