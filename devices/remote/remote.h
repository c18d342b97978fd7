/* Remote devices: the `remote` driver (a device behind `patctl serve`, a
 * Python lab server or a microcontroller, over ZeroMQ or a serial line) and
 * the server side that exposes any opened device through the protocol.
 *
 * Both sides go through the safety boundary: the client's device_run()
 * checks and clamps before anything is sent, and the server runs every
 * request through its own device_run() (limits, ramps, NaN/Inf checks),
 * so a remote client can never bypass the limits of the served device. */
#ifndef PATCTL_REMOTE_H
#define PATCTL_REMOTE_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "devices/device.h"
#include "protocols/link.h"

/* ---- client: counters of a `remote` driver state (d->state) ---- */
typedef struct remote_stats {
    uint64_t requests;      /* requests answered */
    uint64_t timeouts;      /* requests that got no reply in time */
    uint64_t reconnects;    /* links dropped and made anew */
    uint64_t bad_replies;   /* malformed, wrong-sized or mismatched replies */
    uint64_t device_errors; /* ERROR replies */
    uint64_t stale;         /* late replies dropped (seq of an earlier request) */
    uint64_t dropped;       /* pool members dropped after failing */
    uint64_t moved;         /* pool parts retried on another member */
    int members, alive;
} remote_stats;

/* Counters of an open remote device; returns PATCTL_ERR_ARG if d's driver
 * is not `remote`. */
int remote_get_stats(const device *d, remote_stats *out);
/* Link counters of member i (bytes on the wire, retransmissions). */
const pt_link_stats *remote_member_link_stats(const device *d, int i);

/* ---- server ---- */

/* Fault injection for tests (all 0 = off). */
typedef struct serve_faults {
    long die_after;     /* raise SIGKILL after this many RUN requests */
    long delay_every;   /* every Nth RUN reply is delayed by delay_ms */
    int delay_ms;
    long nan_every;     /* every Nth RESULT carries a NaN */
    long short_every;   /* every Nth RESULT has one row too few */
} serve_faults;

/* Reopens the served device with a new seed (a client's DESCRIBE asks for
 * the seed its in-process twin would get).  Returns 0 or an error; *d is
 * replaced. */
typedef int (*serve_reopen_fn)(void *user, device **d, uint64_t seed, char *err, size_t errlen);

typedef struct serve_opts {
    const char *driver;        /* name for the description */
    serve_reopen_fn reopen;    /* NULL: client seeds are ignored */
    void *reopen_user;
    uint32_t mtu;              /* serial: advertised to clients (0 = none) */
    int max_batch;             /* largest B accepted (default 1 << 20) */
    serve_faults faults;
    FILE *log;                 /* one line per fault and per new seed; NULL = stderr */
    int verbose;               /* also a line per request */
} serve_opts;

typedef struct serve_stats {
    uint64_t requests, runs, errors, faults_injected;
} serve_stats;

/* Answer requests on s with device *d until *stop becomes non-zero (checked
 * every 200 ms) or max_requests have been answered (0 = no limit).  The
 * device is made safe before returning.  Returns 0 or an I/O error. */
int remote_serve(device **d, pt_server *s, const serve_opts *o, volatile sig_atomic_t *stop,
                 long max_requests, serve_stats *st);

#endif
