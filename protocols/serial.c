/* Serial links over libserialport: COBS frames, fragments and selective
 * repeat (slink.h).  Address "serial:PORT", e.g. serial:/dev/ttyUSB0.
 * 8 data bits, no parity, 1 stop bit, no flow control, o->baud baud. */
#include <errno.h>
#include <libserialport.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "protocols/link.h"
#include "protocols/slink.h"

#define RX_FRAME_CAP (65535u + PT_OVERHEAD)   /* largest frame a peer may send */
#define HAVE_BYTES 8192u                      /* bitmap of up to 65536 fragments */

typedef struct {
    struct sp_port *port;
    pt_slink l;
    uint8_t *frame_in, *frame_out, *in, *have;
    uint8_t *out;          /* the message being sent, kept for retransmission */
    size_t out_cap;
    uint64_t rng;          /* fault injection */
    pt_link_stats *st;
    int is_device;
    char addr[256];
    uint8_t *pending;      /* bytes read but not fed yet (after a message, or */
    size_t pend_off, pend_len, pend_cap; /* while a write was stalled), owned */
} slink_port;

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* cobs write callback: all bytes to the port (optionally corrupted). */
typedef struct {
    slink_port *sp;
    const pt_link_opts *o;
} wctx;

/* Read what is waiting on the port into the pending buffer. */
static int stash_input(slink_port *sp)
{
    for (;;) {
        if (sp->pend_off + sp->pend_len + 4096 > sp->pend_cap) {
            if (sp->pend_off) {
                memmove(sp->pending, sp->pending + sp->pend_off, sp->pend_len);
                sp->pend_off = 0;
            }
            if (sp->pend_len + 4096 > sp->pend_cap) {
                size_t cap = sp->pend_cap ? 2 * sp->pend_cap : 65536;
                while (cap < sp->pend_len + 4096) /* unread() may have left a small cap */
                    cap *= 2;
                uint8_t *b = realloc(sp->pending, cap);
                if (!b)
                    return -1;
                sp->pending = b;
                sp->pend_cap = cap;
            }
        }
        enum sp_return r = sp_nonblocking_read(sp->port, sp->pending + sp->pend_off + sp->pend_len, 4096);
        if (r <= 0)
            return 0;
        sp->pend_len += (size_t)r;
    }
}

static int port_write(void *user, const uint8_t *p, size_t n)
{
    wctx *w = user;
    slink_port *sp = w->sp;
    uint8_t tmp[256];
    double rate = w->o->corrupt_rate;
    while (n > 0) {
        size_t k = n;
        const uint8_t *src = p;
        if (rate > 0) {
            k = n > sizeof(tmp) ? sizeof(tmp) : n;
            memcpy(tmp, p, k);
            for (size_t i = 0; i < k; i++)
                if ((double)(xorshift(&sp->rng) >> 11) * (1.0 / 9007199254740992.0) < rate)
                    tmp[i] ^= (uint8_t)(1 + xorshift(&sp->rng) % 255);
            src = tmp;
        }
        /* a slow reader (a busy peer, a loaded relay) only delays us: keep
         * writing while bytes move, give up after 30 s without progress */
        size_t done = 0;
        int idle_ms = 0;
        while (done < k) {
            enum sp_return r = sp_blocking_write(sp->port, src + done, k - done, 20);
            if (r < 0)
                return PATCTL_ERR_IO;
            if (r == 0) {
                /* the peer may be blocked writing to us: take its bytes in
                 * (fed later) so that neither side waits for the other */
                if (stash_input(sp) < 0)
                    return PATCTL_ERR_NOMEM;
                if ((idle_ms += 20) >= 30000)
                    return PATCTL_ERR_TIMEOUT;
            } else {
                idle_ms = 0;
            }
            done += (size_t)r;
        }
        sp->st->bytes_out += k;
        p += k;
        n -= k;
    }
    return 0;
}

typedef struct {
    slink_port sp;
    wctx w;
} serial_impl;

static int open_port(serial_impl *si, const char *addr, const pt_link_opts *o, char *err, size_t errlen)
{
    const char *name = addr + 7; /* after "serial:" */
    enum sp_return r = sp_get_port_by_name(name, &si->sp.port);
    if (r != SP_OK) {
        snprintf(err, errlen, "serial port %s: not found (%s)", name,
                 r == SP_ERR_FAIL ? sp_last_error_message() : "no such port");
        si->sp.port = NULL;
        return PATCTL_ERR_NOT_FOUND;
    }
    if ((r = sp_open(si->sp.port, SP_MODE_READ_WRITE)) != SP_OK) {
        char *m = sp_last_error_message();
        snprintf(err, errlen, "serial port %s: cannot open: %s", name, m ? m : "error");
        sp_free_error_message(m);
        sp_free_port(si->sp.port);
        si->sp.port = NULL;
        return PATCTL_ERR_IO;
    }
    if (sp_set_baudrate(si->sp.port, o->baud) != SP_OK || sp_set_bits(si->sp.port, 8) != SP_OK ||
        sp_set_parity(si->sp.port, SP_PARITY_NONE) != SP_OK || sp_set_stopbits(si->sp.port, 1) != SP_OK ||
        sp_set_flowcontrol(si->sp.port, SP_FLOWCONTROL_NONE) != SP_OK) {
        snprintf(err, errlen, "serial port %s: cannot set %d baud 8N1", name, o->baud);
        sp_close(si->sp.port);
        sp_free_port(si->sp.port);
        si->sp.port = NULL;
        return PATCTL_ERR_IO;
    }
    sp_flush(si->sp.port, SP_BUF_BOTH);
    return 0;
}

static void close_port(serial_impl *si)
{
    if (si->sp.port) {
        sp_close(si->sp.port);
        sp_free_port(si->sp.port);
        si->sp.port = NULL;
    }
}

static void impl_free(serial_impl *si)
{
    if (!si)
        return;
    close_port(si);
    free(si->sp.frame_in);
    free(si->sp.frame_out);
    free(si->sp.in);
    free(si->sp.have);
    free(si->sp.out);
    free(si->sp.pending);
    free(si);
}

static int impl_new(serial_impl **out, const char *addr, pt_link_opts *o, pt_link_stats *st, int is_device,
                    char *err, size_t errlen)
{
    *out = NULL;
    if (o->mtu < PT_SLINK_MIN_MTU || o->mtu > 65535u) {
        snprintf(err, errlen, "%s: mtu must be %u..65535, got %u", addr, PT_SLINK_MIN_MTU, o->mtu);
        return PATCTL_ERR_ARG;
    }
    if (o->max_message == 0 || o->max_message > (1u << 30))
        o->max_message = 64u << 20;
    serial_impl *si = calloc(1, sizeof(*si));
    if (!si)
        return PATCTL_ERR_NOMEM;
    si->sp.frame_in = malloc(RX_FRAME_CAP);
    si->sp.frame_out = malloc(o->mtu + PT_OVERHEAD);
    si->sp.in = malloc(o->max_message);
    si->sp.have = malloc(HAVE_BYTES);
    si->sp.st = st;
    si->sp.is_device = is_device;
    si->sp.rng = o->corrupt_seed * 0x9E3779B97F4A7C15ull + 0x1234567ull;
    si->w.sp = &si->sp;
    si->w.o = o;
    snprintf(si->sp.addr, sizeof(si->sp.addr), "%s", addr);
    if (!si->sp.frame_in || !si->sp.frame_out || !si->sp.in || !si->sp.have) {
        impl_free(si);
        return PATCTL_ERR_NOMEM;
    }
    int rc = open_port(si, addr, o, err, errlen);
    if (rc) {
        impl_free(si);
        return rc;
    }
    pt_slink_init(&si->sp.l, is_device, o->mtu, port_write, &si->w, si->sp.frame_in, RX_FRAME_CAP,
                  si->sp.frame_out, si->sp.in, o->max_message, si->sp.have, HAVE_BYTES);
    *out = si;
    return 0;
}

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

/* Keep the payload (for retransmissions) and send it. */
static int send_msg(serial_impl *si, uint8_t type, uint32_t seq, const pt_part *parts, int nparts)
{
    size_t len = pt_parts_len(parts, nparts);
    if (len > (size_t)si->sp.l.mtu * 65535u || len > 0xFFFFFFF0u)
        return PATCTL_ERR_ARG;
    if (len > si->sp.out_cap) {
        uint8_t *b = realloc(si->sp.out, len);
        if (!b)
            return PATCTL_ERR_NOMEM;
        si->sp.out = b;
        si->sp.out_cap = len;
    }
    uint8_t *p = si->sp.out;
    for (int i = 0; i < nparts; i++) {
        if (parts[i].n)
            memcpy(p, parts[i].p, parts[i].n);
        p += parts[i].n;
    }
    return pt_slink_send(&si->sp.l, type, seq, si->sp.out, (uint32_t)len);
}

static void sync_stats(serial_impl *si)
{
    si->sp.st->bad = si->sp.l.st.bad_frames;
    si->sp.st->retransmitted = si->sp.l.st.retransmitted;
    si->sp.st->stale = si->sp.l.st.stale;
    si->sp.st->bytes_in = si->sp.l.st.bytes_in;
}

/* Read and feed until a message completes, the deadline passes, or (client)
 * the line stays silent for link_timeout_ms, which sends a status NACK. */
/* Put n bytes back in front of the pending bytes. */
static int unread(serial_impl *si, const uint8_t *p, size_t n)
{
    slink_port *sp = &si->sp;
    if (n == 0)
        return 0;
    if (sp->pend_off < n) {
        size_t need = n + sp->pend_len;
        if (need > sp->pend_cap) {
            uint8_t *b = realloc(sp->pending, need);
            if (!b)
                return -1;
            sp->pending = b;
            sp->pend_cap = need;
        }
        memmove(sp->pending + n, sp->pending + sp->pend_off, sp->pend_len);
        sp->pend_off = n;
    }
    sp->pend_off -= n;
    memcpy(sp->pending + sp->pend_off, p, n);
    sp->pend_len += n;
    return 0;
}

/* Feed bytes p[n] (a local buffer: writes during the feed may stash new
 * input into the pending buffer).  1 when a message completed (filled into
 * msg); the bytes after it go back to the pending buffer. */
static int feed(serial_impl *si, const uint8_t *p, size_t n, pt_msg *msg)
{
    size_t off = 0;
    while (off < n) {
        int got = 0;
        off += pt_slink_feed(&si->sp.l, p + off, n - off, &got);
        if (got) {
            if (unread(si, p + off, n - off))
                return -1;
            msg->type = si->sp.l.in_type;
            msg->flags = 0;
            msg->seq = si->sp.l.in_seq;
            msg->data = si->sp.l.in;
            msg->len = si->sp.l.in_len;
            return 1;
        }
    }
    return 0;
}

/* Read and feed until a message completes or the deadline passes; the
 * client, when the line stays silent, asks for its reply (a status NACK). */
static int pump(serial_impl *si, const pt_link_opts *o, int client, uint32_t seq, int timeout_ms, pt_msg *msg)
{
    double end = mono_ms() + timeout_ms;
    uint8_t buf[4096];
    /* silence before asking again: link_timeout_ms, doubling while the
     * device stays silent (it may be busy), back to it when bytes come */
    int quiet = o->link_timeout_ms > 0 ? o->link_timeout_ms : 200;
    for (;;) {
        while (si->sp.pend_len) {
            /* stashed bytes first (after a message, or taken in while a
             * write was stalled), through the local buffer */
            size_t k = si->sp.pend_len < sizeof(buf) ? si->sp.pend_len : sizeof(buf);
            memcpy(buf, si->sp.pending + si->sp.pend_off, k);
            si->sp.pend_off += k;
            si->sp.pend_len -= k;
            if (si->sp.pend_len == 0)
                si->sp.pend_off = 0;
            int got = feed(si, buf, k, msg);
            sync_stats(si);
            if (got < 0)
                return PATCTL_ERR_NOMEM;
            if (got)
                return 0;
        }
        double left = timeout_ms < 0 ? 1e9 : end - mono_ms();
        if (left <= 0)
            return PATCTL_ERR_TIMEOUT;
        int slice = quiet;
        if (left < slice)
            slice = (int)left + 1;
        enum sp_return r = sp_blocking_read_next(si->sp.port, buf, sizeof(buf), (unsigned)slice);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return PATCTL_ERR_IO;
        if (r == 0) {
            if (client && left > slice) {
                pt_slink_poll(&si->sp.l, seq);
                if (quiet < 2000)
                    quiet *= 2;
            }
            continue;
        }
        quiet = o->link_timeout_ms > 0 ? o->link_timeout_ms : 200;
        int got = feed(si, buf, (size_t)r, msg);
        sync_stats(si);
        if (got < 0)
            return PATCTL_ERR_NOMEM;
        if (got)
            return 0;
    }
}

/* ---- client ---- */

static int sc_send(pt_client *c, uint8_t type, uint32_t seq, const pt_part *parts, int nparts)
{
    serial_impl *si = c->impl;
    pt_slink_expect(&si->sp.l, seq);
    return send_msg(si, type, seq, parts, nparts);
}

static int sc_wait(pt_client *c, uint32_t seq, int timeout_ms, pt_msg *reply)
{
    serial_impl *si = c->impl;
    if (si->sp.l.in_seq != seq)
        return PATCTL_ERR_STATE;
    return pump(si, &c->o, 1, seq, timeout_ms, reply);
}

/* A new start on the line: drop what is buffered both ways and the link
 * state.  The port is reopened only if it fails (a USB adapter that went
 * away); closing a working port would hang up the other end of a pty. */
static int sc_reconnect(pt_client *c, char *err, size_t errlen)
{
    serial_impl *si = c->impl;
    int rc = 0;
    if (!si->sp.port || sp_flush(si->sp.port, SP_BUF_BOTH) != SP_OK) {
        close_port(si);
        rc = open_port(si, c->address, &c->o, err, errlen);
    }
    si->sp.pend_len = 0;
    si->sp.pend_off = 0;
    if (rc == 0)
        pt_slink_init(&si->sp.l, 0, c->o.mtu, port_write, &si->w, si->sp.frame_in, RX_FRAME_CAP,
                      si->sp.frame_out, si->sp.in, c->o.max_message, si->sp.have, HAVE_BYTES);
    return rc;
}

static void sc_close(pt_client *c)
{
    impl_free(c->impl);
    c->impl = NULL;
}

static const pt_client_ops sclient_ops = {sc_send, sc_wait, sc_reconnect, sc_close};

int pt_serial_client_open(pt_client *c, char *err, size_t errlen)
{
    serial_impl *si;
    int rc = impl_new(&si, c->address, &c->o, &c->st, 0, err, errlen);
    if (rc)
        return rc;
    si->w.o = &c->o;
    c->impl = si;
    c->ops = &sclient_ops;
    return 0;
}

/* ---- server ---- */

static int ss_recv(pt_server *s, int timeout_ms, pt_msg *req)
{
    return pump(s->impl, &s->o, 0, 0, timeout_ms, req);
}

static int ss_reply(pt_server *s, const pt_msg *req, uint8_t type, const pt_part *parts, int nparts)
{
    return send_msg(s->impl, type, req->seq, parts, nparts);
}

static void ss_close(pt_server *s)
{
    impl_free(s->impl);
    s->impl = NULL;
}

static const pt_server_ops sserver_ops = {ss_recv, ss_reply, ss_close};

int pt_serial_server_open(pt_server *s, char *err, size_t errlen)
{
    serial_impl *si;
    int rc = impl_new(&si, s->address, &s->o, &s->st, 1, err, errlen);
    if (rc)
        return rc;
    si->w.o = &s->o;
    s->impl = si;
    s->ops = &sserver_ops;
    return 0;
}

