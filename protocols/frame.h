/* The patctl wire frame (protocols/PROTOCOL.md), version 2.
 *
 * Portable C99: no allocation, no I/O, no host library.  Used by the
 * controller (ZeroMQ and serial) and by the device-side library (protocols/
 * mcu/).  The CRC-32 comes from pt_crc32(), which the host implements with
 * zlib's crc32() (protocols/crc32_zlib.c) and the device-side library with a
 * small bitwise routine (protocols/mcu/crc32.c); both are the same CRC
 * (IEEE 802.3, reflected, init/xorout 0xFFFFFFFF).
 *
 * A frame:  header [24] | payload [len] | CRC-32 [4], all integers
 * little-endian, floats IEEE-754 binary32 little-endian:
 *
 *   off size field
 *    0   2   magic    'P' 'T' (0x50 0x54)
 *    2   1   version  2 (1 still accepted: same layout, RUN/VJP row0 = 0)
 *    3   1   type     PT_* message type
 *    4   2   flags    PT_F_*
 *    6   2   frag     index of this fragment, 0-based (serial links only)
 *    8   2   nfrag    number of fragments of the message, >= 1
 *   10   2   reserved 0
 *   12   4   seq      sequence number: a reply carries its request's seq
 *   16   4   offset   byte offset of this fragment in the message payload
 *   20   4   len      payload bytes in this frame
 *   24 len   payload
 *   24+len 4 crc      CRC-32 of bytes [0, 24+len), or of [0, 24) when
 *                     PT_F_HEADER_CRC is set (transports with their own
 *                     integrity check: ZeroMQ over tcp/ipc/inproc, CURVE)
 */
#ifndef PATCTL_PROTOCOLS_FRAME_H
#define PATCTL_PROTOCOLS_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "patctl/error.h"

#define PT_MAGIC0 0x50u
#define PT_MAGIC1 0x54u
#define PT_VERSION 2u      /* sent */
#define PT_VERSION_MIN 1u  /* oldest accepted */
#define PT_HEADER_SIZE 24u
#define PT_CRC_SIZE 4u
#define PT_OVERHEAD (PT_HEADER_SIZE + PT_CRC_SIZE)

/* Message types.  Requests go controller -> device, replies back. */
enum pt_type {
    PT_DESCRIBE    = 0x01, /* req: optional JSON session options {"seed":"N"} */
    PT_DESCRIPTION = 0x02, /* reply: the device description as JSON */
    PT_RUN         = 0x03, /* req: query id, B, theta, x  (pt_run) */
    PT_RESULT      = 0x04, /* reply: query id, B, y       (pt_result) */
    PT_ERROR       = 0x05, /* reply: i32 PATCTL_ERR_* code + UTF-8 text */
    PT_PING        = 0x06, /* req: any bytes */
    PT_PONG        = 0x07, /* reply: the same bytes */
    PT_MAKE_SAFE   = 0x08, /* req: empty */
    PT_OK          = 0x09, /* reply: empty (make-safe done) */
    PT_VJP         = 0x0A, /* req: exact VJP of a simulated device (pt_vjp) */
    PT_GRADIENT    = 0x0B, /* reply: gx and/or gtheta (pt_gradient) */
    PT_NACK        = 0x0C, /* serial link control: missing fragments */
};

/* Frame flags. */
enum {
    PT_F_BURST_END  = 0x0001, /* serial: last frame of a (re)transmission burst */
    PT_F_HEADER_CRC = 0x0002, /* the CRC covers the header only */
};

typedef struct pt_header {
    uint8_t type;
    uint16_t flags;
    uint16_t frag, nfrag;
    uint32_t seq;
    uint32_t offset;
    uint32_t len;
} pt_header;

/* zlib-compatible CRC-32: pt_crc32(0, p, n) of "123456789" is 0xCBF43926. */
uint32_t pt_crc32(uint32_t crc, const uint8_t *p, size_t n);

/* Little-endian helpers (portable: byte by byte). */
void pt_put_u16(uint8_t *p, uint16_t v);
void pt_put_u32(uint8_t *p, uint32_t v);
void pt_put_u64(uint8_t *p, uint64_t v);
uint16_t pt_get_u16(const uint8_t *p);
uint32_t pt_get_u32(const uint8_t *p);
uint64_t pt_get_u64(const uint8_t *p);

/* n floats to/from little-endian binary32 bytes (memcpy on little-endian
 * hosts, byte order swapped elsewhere). */
void pt_f32_store(uint8_t *dst, const float *src, size_t n);
void pt_f32_load(float *dst, const uint8_t *src, size_t n);

/* Write the 24-byte header of h (magic and version included). */
void pt_header_write(uint8_t *out, const pt_header *h);

/* Compute and append the CRC of a frame whose header and payload are already
 * in frame[0 .. 24+len); writes frame[24+len .. 28+len).  Returns the frame
 * size 28+len. */
size_t pt_frame_seal(uint8_t *frame);

/* Check a received frame of n bytes: size, magic, version, reserved field,
 * len == n - 28, fragment fields, CRC.  Fills *h and returns 0, or
 * PATCTL_ERR_FORMAT (not a frame of this protocol, wrong size, bad CRC) or
 * PATCTL_ERR_PROTOCOL (another protocol version).  max_payload bounds len
 * (0 = no bound beyond n). */
int pt_frame_check(const uint8_t *frame, size_t n, pt_header *h, size_t max_payload);

/* Encode a whole single-fragment frame into out[cap]: header + payload +
 * CRC.  Returns the frame size, or 0 if cap is too small. */
size_t pt_frame_encode(uint8_t *out, size_t cap, uint8_t type, uint16_t flags, uint32_t seq,
                       const uint8_t *payload, size_t len);

/* ---- message payloads (the message = the fragments' payloads joined) ---- */

/* RUN: u64 id | u32 batch | u32 n_theta | u32 n_in | u32 row0 |
 *      theta [n_theta] f32 | x [batch, n_in] f32
 * row0 (version 2; 0 in version 1): index of x's first row in the whole
 * query (struct patctl_query.row0), for parts of a batch split across a pool. */
#define PT_RUN_HEAD 24u
typedef struct pt_run {
    uint64_t id;
    uint32_t batch, n_theta, n_in, row0;
    const uint8_t *theta, *x;   /* into the payload */
} pt_run;
void pt_run_head(uint8_t *out, uint64_t id, uint32_t batch, uint32_t n_theta, uint32_t n_in,
                 uint32_t row0);
int pt_run_parse(const uint8_t *p, size_t n, pt_run *r);

/* RESULT: u64 id | u32 batch | u32 n_out | y [batch, n_out] f32 */
#define PT_RESULT_HEAD 16u
typedef struct pt_result {
    uint64_t id;
    uint32_t batch, n_out;
    const uint8_t *y;
} pt_result;
void pt_result_head(uint8_t *out, uint64_t id, uint32_t batch, uint32_t n_out);
int pt_result_parse(const uint8_t *p, size_t n, pt_result *r);

/* VJP: u64 id | u32 batch | u32 n_theta | u32 n_in | u32 n_out | u32 want |
 *      u32 row0 | theta | x [batch, n_in] | gy [batch, n_out]
 * want: bit 0 gx, bit 1 gtheta; row0 as in RUN (0 in version 1). */
#define PT_VJP_HEAD 32u
typedef struct pt_vjp {
    uint64_t id;
    uint32_t batch, n_theta, n_in, n_out, want, row0;
    const uint8_t *theta, *x, *gy;
} pt_vjp;
void pt_vjp_head(uint8_t *out, uint64_t id, uint32_t batch, uint32_t n_theta, uint32_t n_in,
                 uint32_t n_out, uint32_t want, uint32_t row0);
int pt_vjp_parse(const uint8_t *p, size_t n, pt_vjp *v);

/* GRADIENT: u64 id | u32 batch | u32 n_in | u32 n_theta | u32 have |
 *           gx [batch, n_in] if have & 1 | gtheta [n_theta] if have & 2 */
#define PT_GRADIENT_HEAD 24u
typedef struct pt_gradient {
    uint64_t id;
    uint32_t batch, n_in, n_theta, have;
    const uint8_t *gx, *gtheta;   /* NULL when absent */
} pt_gradient;
void pt_gradient_head(uint8_t *out, uint64_t id, uint32_t batch, uint32_t n_in, uint32_t n_theta,
                      uint32_t have);
int pt_gradient_parse(const uint8_t *p, size_t n, pt_gradient *g);

/* ERROR: i32 code | text (UTF-8, not NUL-terminated, the rest). */
#define PT_ERROR_HEAD 4u
int pt_error_parse(const uint8_t *p, size_t n, int32_t *code, const char **text, size_t *text_len);

/* NACK: u16 nfrag (0 = nothing of this message known: send it all) |
 *       u16 base | bitmap [k bytes]: bit j (byte j/8, bit j%8) set =
 *       fragment base + j missing.  The bitmap covers as many fragments as
 *       fit in one frame; missing fragments past it are reported in a later
 *       round.  nfrag > 0 with no bit set: "have it all, working". */
#define PT_NACK_HEAD 4u

const char *pt_type_name(uint8_t type);

#endif
