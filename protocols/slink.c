/* The serial link layer (see slink.h).  Portable C99, no allocation. */
#include "protocols/slink.h"

#include <string.h>

void pt_slink_init(pt_slink *l, int is_device, uint32_t mtu, cobs_write_fn write, void *user,
                   uint8_t *frame_in, uint32_t frame_in_cap, uint8_t *frame_out, uint8_t *in,
                   uint32_t in_cap, uint8_t *have, uint32_t have_cap)
{
    memset(l, 0, sizeof(*l));
    l->is_device = is_device;
    l->mtu = mtu < PT_SLINK_MIN_MTU ? PT_SLINK_MIN_MTU : mtu;
    cobs_tx_init(&l->tx, write, user);
    l->frame_buf = frame_in;
    l->frame_in_cap = frame_in_cap;
    l->frame_out = frame_out;
    cobs_rx_init(&l->rx, frame_in, frame_in_cap);
    l->in = in;
    l->in_cap = in_cap;
    l->have = have;
    l->have_cap = have_cap;
}

void pt_slink_set_mtu(pt_slink *l, uint32_t mtu)
{
    l->mtu = mtu < PT_SLINK_MIN_MTU ? PT_SLINK_MIN_MTU : mtu;
}

/* Send one frame: header + payload slice, COBS-encoded, delimited. */
static int send_frame(pt_slink *l, uint8_t type, uint16_t flags, uint16_t frag, uint16_t nfrag,
                      uint32_t seq, uint32_t offset, const uint8_t *p, uint32_t len)
{
    pt_header h;
    h.type = type;
    h.flags = flags;
    h.frag = frag;
    h.nfrag = nfrag;
    h.seq = seq;
    h.offset = offset;
    h.len = len;
    pt_header_write(l->frame_out, &h);
    if (len)
        memcpy(l->frame_out + PT_HEADER_SIZE, p, len);
    size_t n = pt_frame_seal(l->frame_out);
    uint64_t before = l->tx.bytes;
    cobs_tx_put(&l->tx, l->frame_out, n);
    int rc = cobs_tx_end(&l->tx);
    l->st.bytes_out += l->tx.bytes - before;
    l->st.frames_out++;
    return rc;
}

static uint16_t nfrag_of(const pt_slink *l, uint32_t len)
{
    uint32_t n = (len + l->mtu - 1) / l->mtu;
    return (uint16_t)(n ? n : 1);
}

/* Send fragment i of the kept message. */
static int send_fragment(pt_slink *l, uint16_t i, int burst_end)
{
    uint16_t nf = nfrag_of(l, l->out_len);
    uint32_t off = (uint32_t)i * l->mtu;
    uint32_t len = l->out_len - off < l->mtu ? l->out_len - off : l->mtu;
    return send_frame(l, l->out_type, (uint16_t)(burst_end ? PT_F_BURST_END : 0), i, nf, l->out_seq,
                      off, l->out + off, len);
}

/* On a noisy line (bad frames or NACKs seen lately) the last frame of a
 * burst is sent twice: losing it costs the receiver's NACK and a round of
 * the controller's polling, so it is worth its bytes; the receiver ignores
 * the copy (no NACK without new fragments). */
static int end_burst(pt_slink *l, uint16_t i)
{
    int rc = send_fragment(l, i, 1);
    if (rc == 0 && l->noisy > 0) {
        l->st.retransmitted++;
        rc = send_fragment(l, i, 1);
    }
    return rc;
}

int pt_slink_send(pt_slink *l, uint8_t type, uint32_t seq, const uint8_t *whole, uint32_t len)
{
    if ((uint64_t)len > (uint64_t)l->mtu * 65535u)
        return PATCTL_ERR_ARG;
    l->out = whole;
    l->out_len = len;
    l->out_type = type;
    l->out_seq = seq;
    l->out_valid = 1;
    uint16_t nf = nfrag_of(l, len);
    int rc = 0;
    if (l->noisy > 0)
        l->noisy--;
    for (uint16_t i = 0; i + 1 < nf && !rc; i++)
        rc = send_fragment(l, i, 0);
    return rc ? rc : end_burst(l, (uint16_t)(nf - 1));
}

static int bit(const uint8_t *m, uint32_t i) { return (m[i >> 3] >> (i & 7)) & 1; }

/* NACK(seq) with what we miss of message seq: missing fragments from the
 * first one on, as many as fit in a frame.  known = 0: nothing known. */
static int send_nack(pt_slink *l, uint32_t seq, int known)
{
    uint8_t buf[4 + 64];
    uint32_t maxbits = 8u * (uint32_t)(l->mtu - PT_NACK_HEAD < 64 ? l->mtu - PT_NACK_HEAD : 64);
    uint16_t nfrag = known ? l->in_nfrag : 0;
    uint16_t base = 0;
    memset(buf, 0, sizeof(buf));
    uint32_t nbytes = 0;
    if (known) {
        while (base < nfrag && bit(l->have, base))
            base++;
        for (uint32_t j = 0; j < maxbits && (uint32_t)base + j < nfrag; j++) {
            if (!bit(l->have, base + j))
                buf[4 + j / 8] |= (uint8_t)(1u << (j % 8));
            nbytes = j / 8 + 1;
        }
    }
    pt_put_u16(buf, nfrag);
    pt_put_u16(buf + 2, base);
    l->st.nacks_out++;
    return send_frame(l, PT_NACK, PT_F_BURST_END, 0, 1, seq, 0, buf, 4 + nbytes);
}

int pt_slink_poll(pt_slink *l, uint32_t seq)
{
    int known = l->in_active && l->in_seq == seq && l->in_nfrag > 0;
    return send_nack(l, seq, known);
}

void pt_slink_expect(pt_slink *l, uint32_t seq)
{
    l->nacked_count = 0xFFFF;
    l->in_active = 1;
    l->in_complete = 0;
    l->in_seq = seq;
    l->in_nfrag = 0;
    l->in_count = 0;
    l->in_fraglen = 0;
    l->in_len = 0;
    l->in_last_offset = 0;
}

/* The peer misses fragments of the message we sent. */
static void on_nack(pt_slink *l, const pt_header *h, const uint8_t *p)
{
    l->st.nacks_in++;
    l->noisy = PT_SLINK_NOISY_MESSAGES;
    if (h->len < PT_NACK_HEAD)
        return;
    uint16_t nfrag = pt_get_u16(p), base = pt_get_u16(p + 2);
    if (l->out_valid && l->out_seq == h->seq) {
        uint16_t nf = nfrag_of(l, l->out_len);
        if (nfrag == 0) {
            for (uint16_t i = 0; i + 1 < nf; i++) {
                l->st.retransmitted++;
                send_fragment(l, i, 0);
            }
            l->st.retransmitted++;
            end_burst(l, (uint16_t)(nf - 1));
            return;
        }
        if (nfrag != nf)
            return;
        /* collect the listed fragments, send them, the last with BURST_END */
        int last = -1;
        uint32_t bits = 8u * (h->len - PT_NACK_HEAD);
        for (uint32_t j = 0; j < bits && (uint32_t)base + j < nf; j++)
            if (bit(p + PT_NACK_HEAD, j))
                last = (int)j;
        for (int j = 0; j <= last; j++)
            if (bit(p + PT_NACK_HEAD, (uint32_t)j)) {
                l->st.retransmitted++;
                if (j == last)
                    end_burst(l, (uint16_t)(base + j));
                else
                    send_fragment(l, (uint16_t)(base + j), 0);
            }
        return;
    }
    if (!l->is_device)
        return;
    /* a status request about the message we are receiving (or do not know) */
    if (l->in_active && l->in_seq == h->seq && l->in_nfrag > 0)
        send_nack(l, h->seq, 1);
    else
        send_nack(l, h->seq, 0);
}

/* Drop what is being received. */
static void reasm_reset(pt_slink *l)
{
    l->nacked_count = 0xFFFF;
    l->in_nfrag = 0;
    l->in_count = 0;
    l->in_fraglen = 0;
    l->in_len = 0;
    l->in_last_offset = 0;
    l->in_complete = 0;
}

/* A data frame: place the fragment.  Returns 1 when the message completed. */
static int on_data(pt_slink *l, const pt_header *h, const uint8_t *p)
{
    if (!l->in_active || l->in_seq != h->seq) {
        if (!l->is_device) {
            l->st.stale++;
            return 0;
        }
        /* the controller moved on to a new request */
        l->in_active = 1;
        l->in_seq = h->seq;
        reasm_reset(l);
    }
    if (l->in_complete)
        return 0; /* a repeat of a message we already have */
    if (l->in_nfrag == 0) {
        if ((uint32_t)h->nfrag > 8u * l->have_cap)
            return 0; /* more fragments than we can track: the peer's mtu is too small */
        l->in_nfrag = h->nfrag;
        l->in_type = h->type;
        memset(l->have, 0, ((size_t)h->nfrag + 7) / 8);
    }
    if (h->nfrag != l->in_nfrag || h->type != l->in_type) {
        reasm_reset(l);
        return 0;
    }
    int last = h->frag + 1 == h->nfrag;
    if (!last) {
        if (l->in_fraglen == 0) {
            if (h->len == 0) {
                reasm_reset(l);
                return 0;
            }
            l->in_fraglen = h->len;
            if (l->in_len && l->in_last_offset != (uint32_t)(l->in_nfrag - 1) * l->in_fraglen) {
                reasm_reset(l);
                return 0;
            }
        }
        if (h->len != l->in_fraglen || h->offset != (uint32_t)h->frag * l->in_fraglen) {
            reasm_reset(l);
            return 0;
        }
    } else {
        if (l->in_fraglen && h->offset != (uint32_t)h->frag * l->in_fraglen) {
            reasm_reset(l);
            return 0;
        }
        if (h->nfrag > 1 && l->in_fraglen && h->len > l->in_fraglen) {
            reasm_reset(l);
            return 0;
        }
    }
    if ((uint64_t)h->offset + h->len > l->in_cap) {
        reasm_reset(l);
        return 0;
    }
    if (!bit(l->have, h->frag)) {
        if (h->len)
            memcpy(l->in + h->offset, p, h->len);
        l->have[h->frag >> 3] |= (uint8_t)(1u << (h->frag & 7));
        l->in_count++;
        if (last) {
            l->in_len = h->offset + h->len;
            l->in_last_offset = h->offset;
        }
    }
    if (l->in_count == l->in_nfrag) {
        l->in_complete = 1;
        if (l->is_device && l->done_valid && l->done_seq == h->seq) {
            /* already run: answer with the kept reply */
            if (l->out_valid && l->out_seq == h->seq) {
                uint8_t all[4] = {0, 0, 0, 0};
                pt_header nh = {PT_NACK, PT_F_BURST_END, 0, 1, h->seq, 0, 4};
                on_nack(l, &nh, all);
            }
            return 0;
        }
        if (l->is_device) {
            l->done_valid = 1;
            l->done_seq = h->seq;
        }
        return 1;
    }
    if ((h->flags & PT_F_BURST_END) && l->in_count != l->nacked_count) {
        l->nacked_count = l->in_count;
        send_nack(l, h->seq, 1);
    }
    return 0;
}

static int on_frame(pt_slink *l, const uint8_t *f, size_t n)
{
    pt_header h;
    if (pt_frame_check(f, n, &h, 0) || (h.flags & PT_F_HEADER_CRC)) {
        l->st.bad_frames++;
        l->noisy = PT_SLINK_NOISY_MESSAGES;
        return 0;
    }
    l->st.frames_in++;
    if (h.type == PT_NACK)
        on_nack(l, &h, f + PT_HEADER_SIZE);
    else
        return on_data(l, &h, f + PT_HEADER_SIZE);
    return 0;
}

size_t pt_slink_feed(pt_slink *l, const uint8_t *p, size_t n, int *got)
{
    *got = 0;
    uint32_t dropped0 = l->rx.dropped;
    size_t i = 0;
    while (i < n) {
        uint8_t b = p[i++];
        l->st.bytes_in++;
        if (cobs_rx_byte(&l->rx, b) && on_frame(l, l->rx.buf, l->rx.len)) {
            *got = 1;
            break;
        }
    }
    if (l->rx.dropped != dropped0) {
        l->st.bad_frames += l->rx.dropped - dropped0;
        l->noisy = PT_SLINK_NOISY_MESSAGES;
    }
    return i;
}
