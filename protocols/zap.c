/* The CURVE client allowlist of a ZeroMQ server (patctl serve --allow-keys):
 * the file format and a ZAP handler (ZeroMQ RFC 27).
 *
 * libzmq asks the ZAP handler of a context -- a REP socket bound to
 * inproc://zeromq.zap.01 in that context -- about every CURVE handshake of
 * a server socket in it.  There is one ZeroMQ context per process
 * (zlink.c), so there is one handler per process, on its own thread,
 * shared by every server with an allowlist.  Each such server gets its own
 * ZAP domain ("patctl-allow-N", set as ZMQ_ZAP_DOMAIN on its socket); the
 * handler answers 200 for a CURVE client key listed for the request's
 * domain and 400 (logged on stderr with the key in Z85) for any other.
 * Requests of other domains (servers without an allowlist, which libzmq
 * also asks once a handler exists) get 200: they accept any client, as
 * they did before.  The thread starts with the first allowlisted server
 * and is stopped and joined when the last one closes. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "protocols/zap.h"

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"

typedef struct zap_domain {
    char name[32];
    char file[256];            /* for the log */
    uint8_t (*keys)[32];       /* n binary public keys (owned) */
    int n;
    struct zap_domain *next;
} zap_domain;

static pthread_mutex_t life_lock = PTHREAD_MUTEX_INITIALIZER; /* add/remove, thread start/stop */
static pthread_mutex_t list_lock = PTHREAD_MUTEX_INITIALIZER; /* the domain list */
static zap_domain *domains;
static unsigned domain_counter;
static pthread_t zap_thread;
static int zap_running;
static atomic_int zap_stop;
static void *zap_sock;        /* the REP socket; owned by the thread while it runs */

/* ---- the allowlist file ---- */

static int key_decode(const char *z85, uint8_t out[32])
{
    return strlen(z85) == 40 && zmq_z85_decode(out, z85) != NULL;
}

int pt_curve_allow_read(const char *path, uint8_t (**keys)[32], int *n, char *err, size_t errlen)
{
    *keys = NULL;
    *n = 0;
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "allowlist %s: %s", path, strerror(errno));
        return PATCTL_ERR_NOT_FOUND;
    }
    char line[512];
    int lineno = 0, cap = 0, rc = 0;
    uint8_t (*k)[32] = NULL;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        char tok[512] = "", val[512] = "";
        int pos = 0;
        if (sscanf(line, " %511s%n", tok, &pos) < 1)
            continue; /* blank */
        uint8_t bin[32];
        /* a bare key (Z85 may contain '#', so a 40-character key comes
         * first), or "public = KEY" as in a keygen .pub file; either may be
         * followed by a '#' comment */
        int ok = key_decode(tok, bin);
        if (!ok && tok[0] == '#')
            continue; /* a comment line */
        if (!ok && sscanf(line, " public = %511s%n", val, &pos) == 1)
            ok = key_decode(val, bin);
        if (ok) {
            const char *r = line + pos;
            while (*r == ' ' || *r == '\t')
                r++;
            ok = *r == '\0' || *r == '\n' || *r == '\r' || *r == '#';
        }
        if (!ok) {
            size_t l = strcspn(line, "\r\n");
            snprintf(err, errlen, "allowlist %s:%d: expected a client's CURVE public key (40 Z85 "
                     "characters, or 'public = KEY' as in a patctl keygen .pub file), got '%.*s'",
                     path, lineno, (int)(l > 60 ? 60 : l), line);
            rc = PATCTL_ERR_FORMAT;
            break;
        }
        if (*n == cap) {
            cap = cap ? 2 * cap : 8;
            void *nk = realloc(k, sizeof(*k) * (size_t)cap);
            if (!nk) {
                rc = PATCTL_ERR_NOMEM;
                break;
            }
            k = nk;
        }
        memcpy(k[(*n)++], bin, 32);
    }
    if (!rc && ferror(f)) {
        snprintf(err, errlen, "allowlist %s: read error", path);
        rc = PATCTL_ERR_IO;
    }
    fclose(f);
    if (!rc && *n == 0) {
        snprintf(err, errlen, "allowlist %s: no keys in it (no client could connect)", path);
        rc = PATCTL_ERR_FORMAT;
    }
    if (rc) {
        free(k);
        *n = 0;
        return rc;
    }
    *keys = k;
    return 0;
}

/* ---- the handler thread ---- */

/* Is key allowed for domain?  1 yes, 0 no (*file: the domain's allowlist),
 * -1 the domain has no allowlist. */
static int lookup(const char *domain, size_t dlen, const uint8_t key[32], char file[256])
{
    int r = -1;
    pthread_mutex_lock(&list_lock);
    for (zap_domain *d = domains; d; d = d->next) {
        if (strlen(d->name) != dlen || memcmp(d->name, domain, dlen) != 0)
            continue;
        r = 0;
        snprintf(file, 256, "%s", d->file);
        for (int i = 0; i < d->n && key; i++)
            if (memcmp(d->keys[i], key, 32) == 0)
                r = 1;
        break;
    }
    pthread_mutex_unlock(&list_lock);
    return r;
}

static void send_str(void *s, const void *p, size_t n, int more)
{
    zmq_send(s, p, n, more ? ZMQ_SNDMORE : 0);
}

/* Answer one request (its frames in m[0..nm)). */
static void answer(void *s, zmq_msg_t *m, int nm)
{
    /* RFC 27: version, request id, domain, address, identity, mechanism,
     * credentials... */
    const char *status = "400", *text = "malformed ZAP request";
    char z85[41] = "", addr[64] = "", file[256] = "";
    if (nm >= 6 && zmq_msg_size(&m[0]) == 3 && memcmp(zmq_msg_data(&m[0]), "1.0", 3) == 0) {
        const char *dom = zmq_msg_data(&m[2]), *mech = zmq_msg_data(&m[5]);
        size_t dl = zmq_msg_size(&m[2]), ml = zmq_msg_size(&m[5]), al = zmq_msg_size(&m[3]);
        snprintf(addr, sizeof(addr), "%.*s", (int)(al < 63 ? al : 63), (const char *)zmq_msg_data(&m[3]));
        int curve = ml == 5 && memcmp(mech, "CURVE", 5) == 0 && nm == 7 && zmq_msg_size(&m[6]) == 32;
        int r = lookup(dom, dl, curve ? zmq_msg_data(&m[6]) : NULL, file);
        if (r < 0) {
            status = "200", text = "OK"; /* a server without an allowlist */
        } else if (r == 1) {
            status = "200", text = "OK";
        } else {
            text = curve ? "client key not allowed" : "CURVE required";
            if (curve)
                zmq_z85_encode(z85, zmq_msg_data(&m[6]), 32);
            fprintf(stderr, "patctl serve: refused client %s from %s: %s (allowlist %s)\n",
                    curve ? z85 : "without a CURVE key", addr[0] ? addr : "?", text, file);
        }
    }
    send_str(s, "1.0", 3, 1);
    if (nm >= 2)
        send_str(s, zmq_msg_data(&m[1]), zmq_msg_size(&m[1]), 1);
    else
        send_str(s, "", 0, 1);
    send_str(s, status, 3, 1);
    send_str(s, text, strlen(text), 1);
    send_str(s, "", 0, 1); /* user id */
    send_str(s, "", 0, 0); /* metadata */
}

static void *zap_main(void *arg)
{
    void *s = arg;
    while (!atomic_load(&zap_stop)) {
        zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
        int n = zmq_poll(&it, 1, 100); /* the stop flag is checked every 100 ms */
        if (n <= 0)
            continue;
        zmq_msg_t m[8];
        int nm = 0, more = 1, ok = 1;
        while (more) {
            zmq_msg_t x;
            zmq_msg_init(&x);
            if (zmq_msg_recv(&x, s, 0) < 0) {
                zmq_msg_close(&x);
                ok = 0;
                break;
            }
            more = zmq_msg_more(&x);
            if (nm < 8)
                m[nm++] = x;
            else
                zmq_msg_close(&x);
        }
        if (ok)
            answer(s, m, nm == 8 ? 0 : nm); /* too many frames: malformed */
        for (int i = 0; i < nm; i++)
            zmq_msg_close(&m[i]);
    }
    zmq_close(s);
    return NULL;
}

/* ---- servers register their allowlists ---- */

int pt_zap_add(void *ctx, const char *path, char domain[32], char *err, size_t errlen)
{
    zap_domain *d = calloc(1, sizeof(*d));
    if (!d)
        return PATCTL_ERR_NOMEM;
    int rc = pt_curve_allow_read(path, &d->keys, &d->n, err, errlen);
    if (rc) {
        free(d);
        return rc;
    }
    snprintf(d->file, sizeof(d->file), "%s", path);
    pthread_mutex_lock(&life_lock);
    if (!zap_running) {
        zap_sock = zmq_socket(ctx, ZMQ_REP);
        if (!zap_sock || zmq_bind(zap_sock, ZAP_ENDPOINT)) {
            snprintf(err, errlen, "cannot start the ZAP handler (%s): %s", ZAP_ENDPOINT, zmq_strerror(zmq_errno()));
            if (zap_sock)
                zmq_close(zap_sock);
            zap_sock = NULL;
            pthread_mutex_unlock(&life_lock);
            free(d->keys);
            free(d);
            return PATCTL_ERR_IO;
        }
        int linger = 0;
        zmq_setsockopt(zap_sock, ZMQ_LINGER, &linger, sizeof(linger));
        atomic_store(&zap_stop, 0);
        if (pthread_create(&zap_thread, NULL, zap_main, zap_sock)) {
            snprintf(err, errlen, "cannot start the ZAP handler thread");
            zmq_close(zap_sock);
            zap_sock = NULL;
            pthread_mutex_unlock(&life_lock);
            free(d->keys);
            free(d);
            return PATCTL_ERR_IO;
        }
        zap_running = 1;
    }
    pthread_mutex_lock(&list_lock);
    snprintf(d->name, sizeof(d->name), "patctl-allow-%u", ++domain_counter);
    d->next = domains;
    domains = d;
    pthread_mutex_unlock(&list_lock);
    snprintf(domain, 32, "%s", d->name);
    pthread_mutex_unlock(&life_lock);
    return 0;
}

void pt_zap_remove(const char *domain)
{
    pthread_mutex_lock(&life_lock);
    pthread_mutex_lock(&list_lock);
    for (zap_domain **p = &domains; *p; p = &(*p)->next) {
        if (strcmp((*p)->name, domain) == 0) {
            zap_domain *d = *p;
            *p = d->next;
            free(d->keys);
            free(d);
            break;
        }
    }
    int last = domains == NULL;
    pthread_mutex_unlock(&list_lock);
    if (last && zap_running) {
        atomic_store(&zap_stop, 1);
        pthread_join(zap_thread, NULL); /* the thread closes the socket */
        zap_sock = NULL;
        zap_running = 0;
    }
    pthread_mutex_unlock(&life_lock);
}
