/* The serial link layer: messages over a lossy byte stream (a UART).
 *
 * Portable C99, no allocation: every buffer is the caller's.  The same code
 * runs in the controller (over libserialport, protocols/serial.c) and in the
 * device-side library (protocols/mcu/).
 *
 * On the line, every frame (frame.h, full CRC) is COBS-encoded and ends in a
 * 0x00 byte (cobs.h).  A message whose payload exceeds the link's MTU is
 * sent as nfrag fragments: frames of the same type and seq, fragment i at
 * byte offset i * L of the payload (L = the length of every fragment but the
 * last).  The last frame of every burst (first transmission or
 * retransmission) carries PT_F_BURST_END.
 *
 * Recovery (selective repeat, driven by the controller):
 *   - a receiver that sees BURST_END of message s while fragments of s are
 *     missing answers NACK(s, bitmap of the missing fragments);
 *   - a side that receives NACK(s) for the message s it is sending (or last
 *     sent) retransmits the listed fragments (nfrag 0 = all of them);
 *   - the controller, when no byte arrives for a while, sends NACK(s) with
 *     what it has of the reply s (nothing: nfrag 0); the device answers by
 *     retransmitting the reply, or, still receiving request s, with its own
 *     NACK(s); a device that has the whole request and is working answers
 *     NACK(s) with no bit set ("busy").
 * A device runs each request seq at most once: a repeated complete request
 * with the seq it last ran is answered with the kept reply, not run again.
 * Frames of other seqs than the one in progress are dropped, so a late reply
 * is never taken for a new one. */
#ifndef PATCTL_PROTOCOLS_SLINK_H
#define PATCTL_PROTOCOLS_SLINK_H

#include <stddef.h>
#include <stdint.h>

#include "protocols/cobs.h"
#include "protocols/frame.h"

typedef struct pt_slink_stats {
    uint64_t frames_in, frames_out;   /* frames with a good CRC / sent */
    uint64_t bad_frames;              /* dropped: COBS, size or CRC errors */
    uint64_t bytes_in, bytes_out;     /* on the line, stuffing + delimiters included */
    uint64_t retransmitted;           /* fragments sent again */
    uint64_t nacks_in, nacks_out;
    uint64_t stale;                   /* frames of another seq dropped */
} pt_slink_stats;

#define PT_SLINK_MIN_MTU 16u
#define PT_SLINK_NOISY_MESSAGES 16u

typedef struct pt_slink {
    int is_device;                    /* 1: the device (server) side */
    uint32_t mtu;                     /* largest payload per frame sent */
    cobs_tx tx;
    cobs_rx rx;                       /* decodes into frame_buf */
    uint8_t *frame_buf;               /* [frame_in_cap], caller's */
    uint32_t frame_in_cap;            /* largest frame received (payload + 28) */
    uint8_t *frame_out;               /* [mtu + PT_OVERHEAD], caller's */
    /* the message being received */
    uint8_t *in;                      /* [in_cap] payload, caller's */
    uint32_t in_cap;
    uint8_t *have;                    /* [have_cap] bitmap of fragments, caller's */
    uint32_t have_cap;
    int in_active, in_complete;
    uint8_t in_type;
    uint32_t in_seq, in_len, in_fraglen, in_last_offset;
    uint16_t in_nfrag, in_count;
    uint16_t nacked_count;            /* in_count when we last NACKed it */
    uint16_t noisy;                   /* messages still sent with a doubled burst end */
    /* the message last sent, kept for retransmission */
    const uint8_t *out;               /* caller's, valid until the next send */
    uint32_t out_len;
    uint8_t out_type;
    uint32_t out_seq;
    int out_valid;
    /* device side: the seq of the last request delivered (run at most once) */
    int done_valid;
    uint32_t done_seq;
    pt_slink_stats st;
} pt_slink;

/* Set up a link.  write sends bytes to the line (blocking until accepted,
 * 0 or a negative error).  mtu bounds the payload of frames we send (at
 * least PT_SLINK_MIN_MTU); frame_out holds mtu + PT_OVERHEAD bytes;
 * frame_in[frame_in_cap] holds the largest frame accepted (the peer's mtu +
 * PT_OVERHEAD); in[in_cap] receives messages; have[have_cap] bitmaps up to
 * 8 * have_cap fragments. */
void pt_slink_init(pt_slink *l, int is_device, uint32_t mtu, cobs_write_fn write, void *user,
                   uint8_t *frame_in, uint32_t frame_in_cap, uint8_t *frame_out, uint8_t *in,
                   uint32_t in_cap, uint8_t *have, uint32_t have_cap);
/* Change the mtu of frames sent (<= the frame_out size given to init). */
void pt_slink_set_mtu(pt_slink *l, uint32_t mtu);

/* Send a message of len bytes at whole (kept, not copied, until the next
 * send, for retransmissions).  Returns 0 or the write error. */
int pt_slink_send(pt_slink *l, uint8_t type, uint32_t seq, const uint8_t *whole, uint32_t len);

/* Feed received bytes.  Returns how many were consumed; stops right after a
 * complete new message, which is then in l->in[0 .. l->in_len) with
 * l->in_type and l->in_seq (*got = 1), valid until the next feed.  Recovery
 * frames (NACK, retransmissions) are handled inside. */
size_t pt_slink_feed(pt_slink *l, const uint8_t *p, size_t n, int *got);

/* Controller side: ask for message seq (what we have of it, or nothing).
 * Sends NACK(seq, missing bitmap). */
int pt_slink_poll(pt_slink *l, uint32_t seq);

/* Forget the message being received (the controller moves on to a new
 * request; its late fragments are then dropped as stale). */
void pt_slink_expect(pt_slink *l, uint32_t seq);

#endif
