/* Transport-independent parts of links (see link.h). */
#include "protocols/link.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

void pt_link_opts_default(pt_link_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->header_crc = 1;
    o->baud = 115200;
    o->mtu = 4096;
    o->max_message = 64u << 20;
    o->link_timeout_ms = 200;
    o->send_timeout_ms = 2000;
}

size_t pt_parts_len(const pt_part *parts, int nparts)
{
    size_t n = 0;
    for (int i = 0; i < nparts; i++)
        n += parts[i].n;
    return n;
}

/* A random first sequence number, so that a new client never repeats the
 * seq a device served last for an earlier client. */
static uint32_t random_seq(void)
{
    uint32_t v = 0;
    if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != (ssize_t)sizeof(v)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        v = (uint32_t)ts.tv_nsec ^ ((uint32_t)getpid() << 16) ^ (uint32_t)ts.tv_sec;
    }
    return v;
}

static int is_serial(const char *a) { return strncmp(a, "serial:", 7) == 0; }

int pt_client_open(pt_client **out, const char *address, const pt_link_opts *o, char *err, size_t errlen)
{
    *out = NULL;
    if (!address || !*address || strlen(address) >= sizeof((*out)->address)) {
        snprintf(err, errlen, "link: missing or too long address");
        return PATCTL_ERR_ARG;
    }
    pt_client *c = calloc(1, sizeof(*c));
    if (!c)
        return PATCTL_ERR_NOMEM;
    snprintf(c->address, sizeof(c->address), "%s", address);
    if (o)
        c->o = *o;
    else
        pt_link_opts_default(&c->o);
    c->next_seq = random_seq();
    int rc = is_serial(address) ? pt_serial_client_open(c, err, errlen) : pt_zmq_client_open(c, err, errlen);
    if (rc) {
        free(c);
        return rc;
    }
    *out = c;
    return 0;
}

int pt_client_send(pt_client *c, uint8_t type, const pt_part *parts, int nparts, uint32_t *seq)
{
    uint32_t s = c->next_seq++;
    int rc = c->ops->send(c, type, s, parts, nparts);
    if (rc == 0) {
        c->st.sent++;
        c->st.payload_out += pt_parts_len(parts, nparts);
    }
    if (seq)
        *seq = s;
    return rc;
}

int pt_client_wait(pt_client *c, uint32_t seq, int timeout_ms, pt_msg *reply)
{
    int rc = c->ops->wait(c, seq, timeout_ms, reply);
    if (rc == 0) {
        c->st.received++;
        c->st.payload_in += reply->len;
    }
    return rc;
}

int pt_client_reconnect(pt_client *c, char *err, size_t errlen) { return c->ops->reconnect(c, err, errlen); }
const pt_link_stats *pt_client_stats(const pt_client *c) { return &c->st; }
const char *pt_client_address(const pt_client *c) { return c->address; }

void pt_client_close(pt_client **cp)
{
    if (!cp || !*cp)
        return;
    if ((*cp)->ops)
        (*cp)->ops->close(*cp);
    free(*cp);
    *cp = NULL;
}

int pt_server_open(pt_server **out, const char *address, const pt_link_opts *o, char *err, size_t errlen)
{
    *out = NULL;
    if (!address || !*address || strlen(address) >= sizeof((*out)->address)) {
        snprintf(err, errlen, "link: missing or too long address");
        return PATCTL_ERR_ARG;
    }
    pt_server *s = calloc(1, sizeof(*s));
    if (!s)
        return PATCTL_ERR_NOMEM;
    snprintf(s->address, sizeof(s->address), "%s", address);
    if (o)
        s->o = *o;
    else
        pt_link_opts_default(&s->o);
    if (is_serial(address) && s->o.curve_allow_file[0]) {
        snprintf(err, errlen, "%s: a CURVE allowlist needs a ZeroMQ address, not a serial line", address);
        free(s);
        return PATCTL_ERR_CONFIG;
    }
    int rc = is_serial(address) ? pt_serial_server_open(s, err, errlen) : pt_zmq_server_open(s, err, errlen);
    if (rc) {
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

int pt_server_recv(pt_server *s, int timeout_ms, pt_msg *req)
{
    int rc = s->ops->recv(s, timeout_ms, req);
    if (rc == 0) {
        s->st.received++;
        s->st.payload_in += req->len;
    }
    return rc;
}

int pt_server_reply(pt_server *s, const pt_msg *req, uint8_t type, const pt_part *parts, int nparts)
{
    int rc = s->ops->reply(s, req, type, parts, nparts);
    if (rc == 0) {
        s->st.sent++;
        s->st.payload_out += pt_parts_len(parts, nparts);
    }
    return rc;
}

const pt_link_stats *pt_server_stats(const pt_server *s) { return &s->st; }
const char *pt_server_address(const pt_server *s) { return s->address; }

void pt_server_close(pt_server **sp)
{
    if (!sp || !*sp)
        return;
    if ((*sp)->ops)
        (*sp)->ops->close(*sp);
    free(*sp);
    *sp = NULL;
}

int pt_address_is_local(const char *a)
{
    if (strncmp(a, "ipc://", 6) == 0 || strncmp(a, "inproc://", 9) == 0)
        return 1;
    if (strncmp(a, "tcp://", 6) != 0)
        return 0;
    const char *h = a + 6;
    /* "tcp://IFACE;HOST:PORT" binds to a source interface: look at the host */
    const char *semi = strchr(h, ';');
    if (semi)
        h = semi + 1;
    char host[128];
    const char *colon = strrchr(h, ':');
    size_t n = colon ? (size_t)(colon - h) : strlen(h);
    if (n == 0 || n >= sizeof(host))
        return 0;
    memcpy(host, h, n);
    host[n] = '\0';
    if (host[0] == '[' && n > 2 && host[n - 1] == ']') {
        memmove(host, host + 1, n - 2);
        host[n - 2] = '\0';
    }
    for (char *p = host; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    if (strcmp(host, "localhost") == 0 || strcmp(host, "::1") == 0 || strcmp(host, "lo") == 0)
        return 1;
    if (strncmp(host, "127.", 4) == 0) {
        for (const char *p = host + 4; *p; p++)
            if (!isdigit((unsigned char)*p) && *p != '.')
                return 0;
        return 1;
    }
    return 0;
}
