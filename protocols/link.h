/* Message links between the controller (client) and a device server, over
 * ZeroMQ (protocols/zlink.c) or a serial line (protocols/serial.c).  One
 * table of transport functions hides which (like libsigrok's serial layer).
 *
 * Addresses: "tcp://HOST:PORT", "ipc:///path", "inproc://name" (ZeroMQ) or
 * "serial:/dev/ttyUSB0" (libserialport).
 *
 * A client sends requests and waits for the reply with the same seq; a reply
 * of another seq (a late answer to an earlier, given-up request) is dropped
 * and counted, never returned.  A server receives requests and answers the
 * one it received last.
 *
 * Host code: allocates (owned objects, _open/_close(T **)).  Knows no device.
 * The host side assumes a little-endian machine, so float arrays are wire
 * bytes as they are (the device-side library converts on any machine). */
#ifndef PATCTL_PROTOCOLS_LINK_H
#define PATCTL_PROTOCOLS_LINK_H

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "patctl's host side needs a little-endian machine (floats go on the wire as they are)"
#endif

#include <stddef.h>
#include <stdint.h>

#include "protocols/frame.h"

/* A received message; data points into link-owned memory valid until the
 * next receive on the same link. */
typedef struct pt_msg {
    uint8_t type;
    uint16_t flags;
    uint32_t seq;
    const uint8_t *data;
    size_t len;
} pt_msg;

/* One piece of an outgoing payload (gathered without an extra copy). */
typedef struct pt_part {
    const void *p;
    size_t n;
} pt_part;

typedef struct pt_link_opts {
    /* ZeroMQ */
    int header_crc;            /* 1: CRC over the header only (default for ZeroMQ) */
    char curve_server_public[41];  /* Z85; client: the server's key (enables CURVE) */
    char curve_public[41];     /* Z85: own key pair (server: required for CURVE; */
    char curve_secret[41];     /*  client: generated when empty) */
    char curve_allow_file[256]; /* server: CURVE client allowlist (zap.c: one
                                  public key per line); empty: any client key */
    int allow_insecure_remote; /* server: serve a non-loopback tcp address without
                                  CURVE (tests only; default refuses) */
    int send_timeout_ms;       /* client: longest wait for a connected server to take a
                                  request (no server: PATCTL_ERR_TIMEOUT), default 2000 */
    /* serial */
    int baud;                  /* default 115200 */
    uint32_t mtu;              /* largest payload per serial frame, default 4096 */
    uint32_t max_message;      /* largest message payload accepted, default 64 MiB */
    int link_timeout_ms;       /* serial: silence before asking again, default 200 */
    /* fault injection for tests: corrupt this fraction of bytes written */
    double corrupt_rate;
    uint64_t corrupt_seed;
} pt_link_opts;

void pt_link_opts_default(pt_link_opts *o);

typedef struct pt_link_stats {
    uint64_t sent, received;       /* messages */
    uint64_t stale;                /* replies of another seq dropped */
    uint64_t bad;                  /* malformed frames dropped */
    uint64_t bytes_out, bytes_in;  /* on the wire */
    uint64_t payload_out, payload_in; /* message payload bytes */
    uint64_t retransmitted;        /* serial fragments sent again */
    uint64_t auth_refused;         /* ZeroMQ client: CURVE handshakes the server
                                      refused (its ZAP handler said no) */
} pt_link_stats;

typedef struct pt_client pt_client;
typedef struct pt_server pt_server;

/* Connect (ZeroMQ: lazily; serial: opens the port).  Caller owns *c. */
int pt_client_open(pt_client **c, const char *address, const pt_link_opts *o, char *err, size_t errlen);
/* Send one request; *seq is its sequence number. */
int pt_client_send(pt_client *c, uint8_t type, const pt_part *parts, int nparts, uint32_t *seq);
/* Wait up to timeout_ms for the reply to seq.  0, PATCTL_ERR_TIMEOUT,
 * PATCTL_ERR_DISCONNECTED, PATCTL_ERR_IO. */
int pt_client_wait(pt_client *c, uint32_t seq, int timeout_ms, pt_msg *reply);
/* Drop the connection and make a new one (a new ZeroMQ identity, so replies
 * to the old one can never arrive; serial: reopen the port). */
int pt_client_reconnect(pt_client *c, char *err, size_t errlen);
const pt_link_stats *pt_client_stats(const pt_client *c);
const char *pt_client_address(const pt_client *c);
void pt_client_close(pt_client **c);

/* Bind/open.  A tcp address that is not loopback needs CURVE keys unless
 * o->allow_insecure_remote.  Caller owns *s. */
int pt_server_open(pt_server **s, const char *address, const pt_link_opts *o, char *err, size_t errlen);
/* Wait up to timeout_ms (-1 = forever) for a request: 0, PATCTL_ERR_TIMEOUT
 * or an I/O error. */
int pt_server_recv(pt_server *s, int timeout_ms, pt_msg *req);
/* Answer the request last received (same seq). */
int pt_server_reply(pt_server *s, const pt_msg *req, uint8_t type, const pt_part *parts, int nparts);
const pt_link_stats *pt_server_stats(const pt_server *s);
/* The address bound (for "tcp://127.0.0.1:*" the port chosen). */
const char *pt_server_address(const pt_server *s);
void pt_server_close(pt_server **s);

/* 1 if a ZeroMQ address only reaches this machine (ipc, inproc, tcp on
 * 127.0.0.0/8, ::1 or localhost). */
int pt_address_is_local(const char *address);

/* CURVE keys: a fresh pair (Z85, 40 characters + NUL). */
int pt_curve_keypair(char public_z85[41], char secret_z85[41]);
/* Read a key file written by `patctl keygen` ("public = Z85" and, in the
 * secret file, "secret = Z85" lines); either output may be NULL. */
int pt_curve_read(const char *path, char public_z85[41], char secret_z85[41], char *err, size_t errlen);
/* A key given as 40 Z85 characters or as a key file path -> public key. */
int pt_curve_public_from(const char *text_or_path, char out[41], char *err, size_t errlen);

/* Internal: the transport table. */
typedef struct pt_client_ops {
    int (*send)(pt_client *c, uint8_t type, uint32_t seq, const pt_part *parts, int nparts);
    int (*wait)(pt_client *c, uint32_t seq, int timeout_ms, pt_msg *reply);
    int (*reconnect)(pt_client *c, char *err, size_t errlen);
    void (*close)(pt_client *c);
} pt_client_ops;

typedef struct pt_server_ops {
    int (*recv)(pt_server *s, int timeout_ms, pt_msg *req);
    int (*reply)(pt_server *s, const pt_msg *req, uint8_t type, const pt_part *parts, int nparts);
    void (*close)(pt_server *s);
} pt_server_ops;

struct pt_client {
    const pt_client_ops *ops;
    char address[256];
    pt_link_opts o;
    uint32_t next_seq;
    pt_link_stats st;
    void *impl;
};

struct pt_server {
    const pt_server_ops *ops;
    char address[256];
    pt_link_opts o;
    pt_link_stats st;
    void *impl;
};

/* Transport constructors (fill c->impl and c->ops). */
int pt_zmq_client_open(pt_client *c, char *err, size_t errlen);
int pt_zmq_server_open(pt_server *s, char *err, size_t errlen);
int pt_serial_client_open(pt_client *c, char *err, size_t errlen);
int pt_serial_server_open(pt_server *s, char *err, size_t errlen);

/* Total bytes of parts. */
size_t pt_parts_len(const pt_part *parts, int nparts);

#endif
