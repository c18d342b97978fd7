/* ZeroMQ links: a DEALER client, a ROUTER server, CURVE keys (see link.h).
 *
 * One frame (frame.h) per ZeroMQ message, never fragmented.  Frames are
 * built directly in the zmq_msg_t (one copy of the payload), and by default
 * carry PT_F_HEADER_CRC: tcp/ipc/inproc already guarantee the bytes (and
 * CURVE authenticates them), so the CRC guards the header only and a 200 KB
 * payload is not checksummed four times per round trip.  header_crc = 0
 * checksums the whole frame.  Receivers honour either. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "protocols/link.h"
#include "protocols/zap.h"

/* ---- one context per process, shared by every link ---- */
static pthread_mutex_t ctx_lock = PTHREAD_MUTEX_INITIALIZER;
static void *ctx;
static int ctx_users;

static void *ctx_get(void)
{
    pthread_mutex_lock(&ctx_lock);
    if (!ctx) {
        ctx = zmq_ctx_new();
        if (ctx)
            zmq_ctx_set(ctx, ZMQ_BLOCKY, 0);
    }
    if (ctx)
        ctx_users++;
    void *c = ctx;
    pthread_mutex_unlock(&ctx_lock);
    return c;
}

static void ctx_put(void)
{
    pthread_mutex_lock(&ctx_lock);
    if (ctx && --ctx_users == 0) {
        zmq_ctx_term(ctx);
        ctx = NULL;
    }
    pthread_mutex_unlock(&ctx_lock);
}

typedef struct {
    void *sock;
    zmq_msg_t in;        /* the last message received (reply or request) */
    int have_in;
    zmq_msg_t peer;      /* server: identity of the last request */
    int have_peer;
    char zap_domain[32]; /* server with an allowlist: its ZAP domain (zap.c) */
    void *mon;           /* client with CURVE: PAIR reading the socket's monitor */
} zlink;

static int zerr(char *err, size_t errlen, const char *what, const char *addr)
{
    snprintf(err, errlen, "%s %s: %s", what, addr, zmq_strerror(zmq_errno()));
    return PATCTL_ERR_IO;
}

static int set_int(void *s, int opt, int v) { return zmq_setsockopt(s, opt, &v, sizeof(v)); }

/* Build and send one frame in a zmq message. */
static int zsend(void *sock, const pt_link_opts *o, uint8_t type, uint32_t seq, const pt_part *parts,
                 int nparts, int flags_more, pt_link_stats *st)
{
    size_t len = pt_parts_len(parts, nparts);
    if (len > 0xFFFFFFFFu - PT_OVERHEAD)
        return PATCTL_ERR_ARG;
    zmq_msg_t m;
    if (zmq_msg_init_size(&m, PT_OVERHEAD + len))
        return PATCTL_ERR_NOMEM;
    uint8_t *f = zmq_msg_data(&m);
    pt_header h = {type, (uint16_t)(o->header_crc ? PT_F_HEADER_CRC : 0), 0, 1, seq, 0, (uint32_t)len};
    pt_header_write(f, &h);
    uint8_t *p = f + PT_HEADER_SIZE;
    for (int i = 0; i < nparts; i++) {
        if (parts[i].n)
            memcpy(p, parts[i].p, parts[i].n);
        p += parts[i].n;
    }
    pt_frame_seal(f);
    if (zmq_msg_send(&m, sock, flags_more) < 0) {
        int e = zmq_errno();
        zmq_msg_close(&m);
        return e == EAGAIN ? PATCTL_ERR_TIMEOUT : e == EINTR ? PATCTL_ERR_INTERRUPTED : PATCTL_ERR_IO;
    }
    st->bytes_out += PT_OVERHEAD + len;
    return 0;
}

/* Receive one part into m (initialised by the caller): 0, TIMEOUT, IO. */
static int zrecv_part(void *sock, zmq_msg_t *m, int timeout_ms)
{
    zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
    int n = zmq_poll(&it, 1, timeout_ms);
    if (n < 0)
        return zmq_errno() == EINTR ? PATCTL_ERR_INTERRUPTED : PATCTL_ERR_IO;
    if (n == 0)
        return PATCTL_ERR_TIMEOUT;
    if (zmq_msg_recv(m, sock, ZMQ_DONTWAIT) < 0)
        return zmq_errno() == EAGAIN ? PATCTL_ERR_TIMEOUT : PATCTL_ERR_IO;
    return 0;
}

static void drain_more(void *sock)
{
    int more = 0;
    size_t sz = sizeof(more);
    while (zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &sz) == 0 && more) {
        zmq_msg_t x;
        zmq_msg_init(&x);
        zmq_msg_recv(&x, sock, 0);
        zmq_msg_close(&x);
    }
}

static int has_more(void *sock)
{
    int more = 0;
    size_t sz = sizeof(more);
    return zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &sz) == 0 && more;
}

/* Check the frame in m and fill msg. */
static int take_frame(zmq_msg_t *m, uint32_t max, pt_msg *msg)
{
    pt_header h;
    const uint8_t *f = zmq_msg_data(m);
    size_t n = zmq_msg_size(m);
    int rc = pt_frame_check(f, n, &h, max);
    if (rc)
        return rc;
    if (h.nfrag != 1)
        return PATCTL_ERR_FORMAT;
    msg->type = h.type;
    msg->flags = h.flags;
    msg->seq = h.seq;
    msg->data = f + PT_HEADER_SIZE;
    msg->len = h.len;
    return 0;
}

/* ---- client: DEALER ---- */

static int client_socket(pt_client *c, char *err, size_t errlen)
{
    zlink *z = c->impl;
    z->sock = zmq_socket(ctx, ZMQ_DEALER);
    if (!z->sock)
        return zerr(err, errlen, "zmq socket for", c->address);
    set_int(z->sock, ZMQ_LINGER, 0);
    set_int(z->sock, ZMQ_IMMEDIATE, 1);      /* queue nothing for absent peers */
    set_int(z->sock, ZMQ_SNDTIMEO, c->o.send_timeout_ms > 0 ? c->o.send_timeout_ms : 2000);
    set_int(z->sock, ZMQ_RECONNECT_IVL, 50);
    set_int(z->sock, ZMQ_RECONNECT_IVL_MAX, 1000);
    if (c->o.curve_server_public[0]) {
        if (!c->o.curve_secret[0] && pt_curve_keypair(c->o.curve_public, c->o.curve_secret)) {
            snprintf(err, errlen, "%s: cannot make a CURVE key pair (libzmq without CURVE?)", c->address);
            return PATCTL_ERR_UNSUPPORTED;
        }
        if (zmq_setsockopt(z->sock, ZMQ_CURVE_SERVERKEY, c->o.curve_server_public, 41) ||
            zmq_setsockopt(z->sock, ZMQ_CURVE_PUBLICKEY, c->o.curve_public, 41) ||
            zmq_setsockopt(z->sock, ZMQ_CURVE_SECRETKEY, c->o.curve_secret, 41))
            return zerr(err, errlen, "CURVE keys for", c->address);
        /* watch for the server refusing our key (its ZAP handler said no):
         * libzmq gives no error on the socket itself, only this event */
        static atomic_uint mon_counter;
        char mon_ep[64];
        snprintf(mon_ep, sizeof(mon_ep), "inproc://patctl-monitor-%u", atomic_fetch_add(&mon_counter, 1));
        if (zmq_socket_monitor(z->sock, mon_ep, ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) == 0) {
            z->mon = zmq_socket(ctx, ZMQ_PAIR);
            if (z->mon && zmq_connect(z->mon, mon_ep)) {
                zmq_close(z->mon);
                z->mon = NULL;
            }
            if (z->mon)
                set_int(z->mon, ZMQ_LINGER, 0);
        }
    }
    if (zmq_connect(z->sock, c->address))
        return zerr(err, errlen, "cannot connect to", c->address);
    return 0;
}

/* Count the authentication failures the monitor reported (non-blocking). */
static void check_auth(pt_client *c)
{
    zlink *z = c->impl;
    if (!z->mon)
        return;
    for (;;) {
        zmq_msg_t ev;
        zmq_msg_init(&ev);
        if (zmq_msg_recv(&ev, z->mon, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&ev);
            return;
        }
        /* frame 1: uint16 event + uint32 value (native order); frame 2: endpoint */
        uint16_t id = 0;
        if (zmq_msg_size(&ev) >= 2)
            memcpy(&id, zmq_msg_data(&ev), 2);
        int more = zmq_msg_more(&ev);
        zmq_msg_close(&ev);
        if (more)
            drain_more(z->mon);
        if (id == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
            c->st.auth_refused++;
    }
}

static int zc_send(pt_client *c, uint8_t type, uint32_t seq, const pt_part *parts, int nparts)
{
    zlink *z = c->impl;
    uint64_t refused = c->st.auth_refused;
    int rc = zsend(z->sock, &c->o, type, seq, parts, nparts, 0, &c->st);
    if (rc) {
        check_auth(c);
        if (c->st.auth_refused > refused)
            return PATCTL_ERR_AUTH;
    }
    return rc;
}

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

/* One message from the socket within timeout_ms; with a monitor, a
 * refused CURVE handshake (the server's ZAP handler said no) ends the wait
 * at once with PATCTL_ERR_AUTH instead of waiting out the timeout: retrying
 * cannot help.  (Only HANDSHAKE_FAILED_AUTH is watched; NO_DETAIL failures
 * may be transient and are left to the timeout and retries.) */
static int recv_or_refused(pt_client *c, int timeout_ms)
{
    zlink *z = c->impl;
    if (!z->mon)
        return zrecv_part(z->sock, &z->in, timeout_ms);
    uint64_t refused = c->st.auth_refused;
    double end = mono_ms() + timeout_ms;
    for (;;) {
        double left = end - mono_ms();
        zmq_pollitem_t it[2] = {{z->sock, 0, ZMQ_POLLIN, 0}, {z->mon, 0, ZMQ_POLLIN, 0}};
        int n = zmq_poll(it, 2, left > 0 ? (long)left : 0);
        if (n < 0)
            return zmq_errno() == EINTR ? PATCTL_ERR_INTERRUPTED : PATCTL_ERR_IO;
        if (it[1].revents & ZMQ_POLLIN) {
            check_auth(c);
            if (c->st.auth_refused > refused)
                return PATCTL_ERR_AUTH;
        }
        if (it[0].revents & ZMQ_POLLIN) {
            if (zmq_msg_recv(&z->in, z->sock, ZMQ_DONTWAIT) >= 0)
                return 0;
            if (zmq_errno() != EAGAIN)
                return PATCTL_ERR_IO;
        }
        if (mono_ms() >= end)
            return PATCTL_ERR_TIMEOUT;
    }
}

static int zc_wait(pt_client *c, uint32_t seq, int timeout_ms, pt_msg *reply)
{
    zlink *z = c->impl;
    double end = mono_ms() + timeout_ms;
    for (;;) {
        double left = end - mono_ms();
        if (left < 0)
            left = 0;
        if (z->have_in) {
            zmq_msg_close(&z->in);
            z->have_in = 0;
        }
        zmq_msg_init(&z->in);
        z->have_in = 1;
        int rc = recv_or_refused(c, (int)left);
        if (rc) {
            check_auth(c);
            return rc;
        }
        c->st.bytes_in += zmq_msg_size(&z->in);
        if (has_more(z->sock)) {
            drain_more(z->sock);
            c->st.bad++;
            continue;
        }
        if (take_frame(&z->in, c->o.max_message, reply)) {
            c->st.bad++;
            continue;
        }
        if (reply->seq != seq) {
            c->st.stale++; /* a late reply to a request given up on */
            continue;
        }
        return 0;
    }
}

static void zc_drop(pt_client *c)
{
    zlink *z = c->impl;
    if (z->have_in) {
        zmq_msg_close(&z->in);
        z->have_in = 0;
    }
    if (z->mon) {
        zmq_socket_monitor(z->sock, NULL, 0);
        zmq_close(z->mon);
        z->mon = NULL;
    }
    if (z->sock) {
        zmq_close(z->sock);
        z->sock = NULL;
    }
}

static int zc_reconnect(pt_client *c, char *err, size_t errlen)
{
    zc_drop(c);
    return client_socket(c, err, errlen);
}

static void zc_close(pt_client *c)
{
    if (!c->impl)
        return;
    zc_drop(c);
    free(c->impl);
    c->impl = NULL;
    ctx_put();
}

static const pt_client_ops zclient_ops = {zc_send, zc_wait, zc_reconnect, zc_close};

int pt_zmq_client_open(pt_client *c, char *err, size_t errlen)
{
    if (!ctx_get()) {
        snprintf(err, errlen, "cannot create a ZeroMQ context");
        return PATCTL_ERR_IO;
    }
    c->impl = calloc(1, sizeof(zlink));
    c->ops = &zclient_ops;
    if (!c->impl) {
        ctx_put();
        return PATCTL_ERR_NOMEM;
    }
    int rc = client_socket(c, err, errlen);
    if (rc)
        zc_close(c);
    return rc;
}

/* ---- server: ROUTER ---- */

static int zs_recv(pt_server *s, int timeout_ms, pt_msg *req)
{
    zlink *z = s->impl;
    double end = mono_ms() + timeout_ms;
    for (;;) {
        double left = timeout_ms < 0 ? -1 : end - mono_ms();
        if (timeout_ms >= 0 && left < 0)
            left = 0;
        if (z->have_peer) {
            zmq_msg_close(&z->peer);
            z->have_peer = 0;
        }
        if (z->have_in) {
            zmq_msg_close(&z->in);
            z->have_in = 0;
        }
        zmq_msg_init(&z->peer);
        z->have_peer = 1;
        int rc = zrecv_part(z->sock, &z->peer, (int)left);
        if (rc)
            return rc;
        if (!has_more(z->sock)) {
            s->st.bad++;
            continue;
        }
        zmq_msg_init(&z->in);
        z->have_in = 1;
        if (zmq_msg_recv(&z->in, z->sock, 0) < 0)
            return PATCTL_ERR_IO;
        s->st.bytes_in += zmq_msg_size(&z->in);
        if (has_more(z->sock)) {
            drain_more(z->sock);
            s->st.bad++;
            continue;
        }
        if (take_frame(&z->in, s->o.max_message, req)) {
            s->st.bad++;
            continue;
        }
        return 0;
    }
}

static int zs_reply(pt_server *s, const pt_msg *req, uint8_t type, const pt_part *parts, int nparts)
{
    zlink *z = s->impl;
    if (!z->have_peer)
        return PATCTL_ERR_STATE;
    zmq_msg_t id;
    zmq_msg_init(&id);
    zmq_msg_copy(&id, &z->peer);
    if (zmq_msg_send(&id, z->sock, ZMQ_SNDMORE) < 0) {
        zmq_msg_close(&id);
        return PATCTL_ERR_IO;
    }
    /* answer with the frame flavour the client used */
    pt_link_opts o = s->o;
    o.header_crc = (req->flags & PT_F_HEADER_CRC) ? 1 : 0;
    return zsend(z->sock, &o, type, req->seq, parts, nparts, 0, &s->st);
}

static void zs_close(pt_server *s)
{
    zlink *z = s->impl;
    if (!z)
        return;
    if (z->have_in)
        zmq_msg_close(&z->in);
    if (z->have_peer)
        zmq_msg_close(&z->peer);
    if (z->sock)
        zmq_close(z->sock);
    if (z->zap_domain[0])
        pt_zap_remove(z->zap_domain);
    free(z);
    s->impl = NULL;
    ctx_put();
}

static const pt_server_ops zserver_ops = {zs_recv, zs_reply, zs_close};

int pt_zmq_server_open(pt_server *s, char *err, size_t errlen)
{
    int curve = s->o.curve_secret[0] != 0;
    if (s->o.curve_allow_file[0] && !curve) {
        snprintf(err, errlen, "%s: a client allowlist (%s) needs CURVE keys (--curve-key FILE)", s->address,
                 s->o.curve_allow_file);
        return PATCTL_ERR_CONFIG;
    }
    if (!curve && !pt_address_is_local(s->address) && !s->o.allow_insecure_remote) {
        snprintf(err, errlen,
                 "%s is not a loopback address: serving it needs CURVE keys (patctl keygen, then "
                 "--curve-key FILE); clients then need the server's public key",
                 s->address);
        return PATCTL_ERR_CONFIG;
    }
    if (!ctx_get()) {
        snprintf(err, errlen, "cannot create a ZeroMQ context");
        return PATCTL_ERR_IO;
    }
    zlink *z = calloc(1, sizeof(*z));
    s->impl = z;
    s->ops = &zserver_ops;
    if (!z) {
        ctx_put();
        return PATCTL_ERR_NOMEM;
    }
    int rc = 0;
    z->sock = zmq_socket(ctx, ZMQ_ROUTER);
    if (!z->sock) {
        rc = zerr(err, errlen, "zmq socket for", s->address);
        goto fail;
    }
    set_int(z->sock, ZMQ_LINGER, 0);
    set_int(z->sock, ZMQ_SNDTIMEO, 2000);
    if (curve) {
        if (set_int(z->sock, ZMQ_CURVE_SERVER, 1) ||
            zmq_setsockopt(z->sock, ZMQ_CURVE_SECRETKEY, s->o.curve_secret, 41)) {
            rc = zerr(err, errlen, "CURVE server key for", s->address);
            goto fail;
        }
        if (s->o.curve_allow_file[0]) {
            rc = pt_zap_add(ctx, s->o.curve_allow_file, z->zap_domain, err, errlen);
            if (rc)
                goto fail;
            if (zmq_setsockopt(z->sock, ZMQ_ZAP_DOMAIN, z->zap_domain, strlen(z->zap_domain))) {
                rc = zerr(err, errlen, "ZAP domain for", s->address);
                goto fail;
            }
        }
    }
    if (zmq_bind(z->sock, s->address)) {
        rc = zerr(err, errlen, "cannot bind", s->address);
        goto fail;
    }
    /* the address really bound (a tcp port given as * is chosen now) */
    char bound[256];
    size_t bl = sizeof(bound);
    if (zmq_getsockopt(z->sock, ZMQ_LAST_ENDPOINT, bound, &bl) == 0 && bl > 1 && bl <= sizeof(s->address))
        snprintf(s->address, sizeof(s->address), "%s", bound);
    return 0;
fail:
    zs_close(s);
    return rc ? rc : PATCTL_ERR_IO;
}

/* ---- CURVE keys ---- */

int pt_curve_keypair(char public_z85[41], char secret_z85[41])
{
    if (!zmq_has("curve"))
        return PATCTL_ERR_UNSUPPORTED;
    return zmq_curve_keypair(public_z85, secret_z85) ? PATCTL_ERR_IO : 0;
}

static int z85_key_ok(const char *k)
{
    uint8_t bin[32];
    return strlen(k) == 40 && zmq_z85_decode(bin, k) != NULL;
}

int pt_curve_read(const char *path, char public_z85[41], char secret_z85[41], char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "key file %s: %s", path, strerror(errno));
        return PATCTL_ERR_NOT_FOUND;
    }
    char line[256];
    int got_pub = 0, got_sec = 0, lineno = 0;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        char key[16], val[64];
        if (line[0] == '#' || line[0] == '\n')
            continue;
        if (sscanf(line, " %15[a-z] = %63s", key, val) != 2 || !z85_key_ok(val)) {
            snprintf(err, errlen, "key file %s:%d: expected 'public = KEY' or 'secret = KEY' "
                     "with a 40-character Z85 key", path, lineno);
            fclose(f);
            return PATCTL_ERR_FORMAT;
        }
        if (strcmp(key, "public") == 0) {
            if (public_z85)
                memcpy(public_z85, val, 41);
            got_pub = 1;
        } else if (strcmp(key, "secret") == 0) {
            if (secret_z85)
                memcpy(secret_z85, val, 41);
            got_sec = 1;
        }
    }
    fclose(f);
    if ((public_z85 && !got_pub) || (secret_z85 && !got_sec)) {
        snprintf(err, errlen, "key file %s: no %s key in it", path, (public_z85 && !got_pub) ? "public" : "secret");
        return PATCTL_ERR_FORMAT;
    }
    return 0;
}

int pt_curve_public_from(const char *text, char out[41], char *err, size_t errlen)
{
    if (z85_key_ok(text)) {
        memcpy(out, text, 41);
        return 0;
    }
    return pt_curve_read(text, out, NULL, err, errlen);
}
