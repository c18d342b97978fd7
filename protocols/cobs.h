/* Consistent Overhead Byte Stuffing (Cheshire & Baker 1999) for serial
 * links: a packet is COBS-encoded (no 0x00 byte left in it) and followed by
 * one 0x00 delimiter, so a receiver that lost bytes or saw line noise
 * resynchronises at the next 0x00.  Overhead: at most 1 byte per 254 plus
 * the code byte and the delimiter.
 *
 * Portable C99, no allocation: buffers belong to the caller.  Used by the
 * controller and by the device-side library. */
#ifndef PATCTL_PROTOCOLS_COBS_H
#define PATCTL_PROTOCOLS_COBS_H

#include <stddef.h>
#include <stdint.h>

/* Largest encoding of n bytes (without the delimiter). */
#define COBS_MAX_ENCODED(n) ((n) + (n) / 254u + 1u)

/* Encode src[n] into dst (capacity >= COBS_MAX_ENCODED(n)); no delimiter is
 * written.  Returns the encoded length. */
size_t cobs_encode(uint8_t *dst, const uint8_t *src, size_t n);

/* Decode one packet src[n] (without delimiter) into dst[cap].  Returns 0 and
 * the length in *out_len, or -1 if src holds a 0x00, ends inside a block, or
 * does not fit in cap. */
int cobs_decode(uint8_t *dst, size_t cap, const uint8_t *src, size_t n, size_t *out_len);

/* Streaming decoder: bytes in, packets out.  buf[cap] is the caller's. */
typedef struct cobs_rx {
    uint8_t *buf;
    size_t cap;
    size_t len;          /* decoded bytes of the packet so far */
    uint8_t code;        /* code byte of the current block */
    uint8_t left;        /* data bytes still due in the current block */
    uint8_t started;     /* a code byte has been seen in this packet */
    uint8_t bad;         /* this packet is broken: drop it at the delimiter */
    uint32_t dropped;    /* packets dropped as malformed or too long */
} cobs_rx;

void cobs_rx_init(cobs_rx *r, uint8_t *buf, size_t cap);
/* Feed one byte.  Returns 1 when it was the delimiter of a well-formed packet
 * (decoded in r->buf[0 .. r->len), valid until the next call), 0 otherwise.
 * A malformed or too long packet is counted in r->dropped and skipped. */
int cobs_rx_byte(cobs_rx *r, uint8_t b);

/* Streaming encoder: bytes in, encoded blocks out through a write callback
 * (one call per block of at most 255 bytes, and one for the delimiter).
 * Keeps one block (255 bytes) of state. */
typedef int (*cobs_write_fn)(void *user, const uint8_t *p, size_t n);
typedef struct cobs_tx {
    cobs_write_fn write;
    void *user;
    uint8_t block[255];  /* block[0] = code, then up to 254 data bytes */
    uint8_t n;           /* data bytes in block */
    int err;             /* first error of write(), sticky */
    uint64_t bytes;      /* encoded bytes written, delimiters included */
} cobs_tx;

void cobs_tx_init(cobs_tx *t, cobs_write_fn write, void *user);
void cobs_tx_put(cobs_tx *t, const uint8_t *p, size_t n);
/* End the packet: flush the last block and write the 0x00 delimiter.
 * Returns the first write error since init/the last end, or 0. */
int cobs_tx_end(cobs_tx *t);

#endif
