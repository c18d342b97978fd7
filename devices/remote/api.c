/* The `remote` driver: a device behind a server (patctl serve, the Python lab
 * module, a microcontroller), over ZeroMQ (DEALER) or a serial line.
 *
 * Options:
 *   endpoint=ADDR[|ADDR...]  tcp://HOST:PORT, ipc:///path or serial:/dev/tty...;
 *                            several addresses separated by '|' make a pool
 *   timeout_ms=2000          wait for one reply
 *   retries=3                extra attempts of a request (new seq each, after a
 *                            reconnect with backoff); device_run() retries
 *                            failed queries on top of this
 *   backoff_ms=50 backoff_max_ms=1000   reconnect delay, doubling
 *   server_key=KEY|FILE      the server's CURVE public key (enables CURVE)
 *   client_key=FILE          own CURVE key pair from `patctl keygen` (its public key
 *                            goes on the server's --allow-keys list); default: a
 *                            fresh ephemeral pair per device
 *   crc=header|full          ZeroMQ frames: CRC over the header (default) or all
 *   baud=115200 mtu=4096     serial line settings
 *   link_timeout_ms=200      serial: silence before asking again
 *   vjp=1                    forward the exact VJP of simulated servers
 *   corrupt=0                fault injection: fraction of serial bytes sent
 *                            corrupted (tests)
 *   seed=N                   forwarded to a seeded server (patctl passes the
 *                            seed its in-process twin would get)
 *
 * Every RUN carries the query id patctl gave (struct patctl_query.id) and
 * the absolute index of its first row (row0), so a seeded simulator behind
 * `patctl serve` draws the same noise as in-process.
 * Sequence numbers (per link, one per request) tie replies to requests: a
 * late reply to a request given up on is dropped, never taken for a new one.
 *
 * Pools: a batch is split into contiguous row ranges, one per live member,
 * all sent before any reply is awaited, so the parts run in parallel.  A
 * member that fails (after its retries) is dropped and its part retried on
 * the others; a dropped member is tried again after backoff_max_ms.  Parts
 * of one query share its id and carry their row offset (RUN row0, protocol
 * 2), so a pool of seeded simulators draws exactly the noise one device
 * would: a pooled run is bit-identical to a single server and to in-process.
 * Every member of a pool must speak protocol 2 (checked at open). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "devices/drivers.h"
#include "devices/options.h"
#include "devices/remote/remote.h"
#include "protocols/desc_json.h"

#define REMOTE_MAX_MEMBERS 16

typedef struct member {
    char addr[256];
    pt_client *c;
    int alive;
    uint32_t protocol;      /* version its description announced */
    double retry_at;        /* monotonic seconds: when a dropped member is tried again */
} member;

typedef struct remote {
    member m[REMOTE_MAX_MEMBERS];
    int n;
    pt_link_opts lo;
    int timeout_ms, retries, backoff_ms, backoff_max_ms, vjp;
    int has_seed;
    uint64_t seed;
    int opened, handshaking;
    struct patctl_device_desc desc;
    long n_theta;
    remote_stats st;
    char err[256];
} remote;

static const char *const known[] = {
    "endpoint", "timeout_ms", "retries", "backoff_ms", "backoff_max_ms", "server_key", "client_key",
    "crc", "baud", "mtu", "link_timeout_ms", "vjp", "corrupt", "seed", NULL,
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Faults are logged here (the driver ABI has no logger): one line each. */
static void rlog(remote *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, sizeof(r->err), fmt, ap);
    va_end(ap);
    fprintf(stderr, "patctl: remote: %s\n", r->err);
}

/* ---- one request with timeouts, retries, reconnects ---- */

/* Check a reply: ERROR -> its code (text in r->err); otherwise the type. */
static int reply_status(remote *r, member *mb, const pt_msg *rep, uint8_t want)
{
    if (rep->type == want)
        return 0;
    if (rep->type == PT_ERROR) {
        int32_t code;
        const char *t;
        size_t tn;
        if (pt_error_parse(rep->data, rep->len, &code, &t, &tn) == 0) {
            r->st.device_errors++;
            rlog(r, "%s: device error %d (%s): %.*s", mb->addr, code, patctl_strerror(code),
                 (int)(tn > 200 ? 200 : tn), t);
            return code < 0 && code >= PATCTL_ERR_STATE ? code : PATCTL_ERR_DEVICE;
        }
    }
    r->st.bad_replies++;
    rlog(r, "%s: unexpected %s reply", mb->addr, pt_type_name(rep->type));
    return PATCTL_ERR_PROTOCOL;
}

static int describe(remote *r, member *mb, struct patctl_device_desc *out, char *err, size_t errlen);
static int same_shape(const struct patctl_device_desc *a, const struct patctl_device_desc *b);

static void backoff_reconnect(remote *r, member *mb, int attempt)
{
    int ms = r->backoff_ms;
    for (int i = 1; i < attempt && ms < r->backoff_max_ms; i++)
        ms *= 2;
    if (ms > r->backoff_max_ms)
        ms = r->backoff_max_ms;
    sleep_ms(ms);
    char err[256] = "";
    r->st.reconnects++;
    if (pt_client_reconnect(mb->c, err, sizeof(err))) {
        rlog(r, "%s: reconnect failed: %s", mb->addr, err);
        return;
    }
    /* a new session: the server may have restarted, so describe again (it
     * gets our seed) and make sure it is still the same device */
    if (r->opened && !r->handshaking) {
        struct patctl_device_desc d;
        int retries = r->retries;
        r->handshaking = 1;
        r->retries = 0;
        int rc = describe(r, mb, &d, err, sizeof(err));
        r->retries = retries;
        r->handshaking = 0;
        if (rc == 0 && !same_shape(&r->desc, &d))
            rlog(r, "%s: after reconnecting, the server describes a different device", mb->addr);
    }
}

/* Validate callback: 0 = good reply, else an error code (the reply is bad). */
typedef int (*check_fn)(remote *r, member *mb, const pt_msg *rep, void *ctx);

/* Send parts as a `type` request to mb and wait for a good reply, with
 * retries.  Transport failures and bad replies are retried; an ERROR reply
 * from the device is returned at once (device_run decides about retrying). */
static int request(remote *r, member *mb, uint8_t type, const pt_part *parts, int np, uint8_t want,
                   check_fn check, void *ctx)
{
    int rc = PATCTL_ERR_TIMEOUT;
    uint64_t refused = pt_client_stats(mb->c)->auth_refused;
    for (int attempt = 0; attempt <= r->retries; attempt++) {
        if (attempt > 0)
            backoff_reconnect(r, mb, attempt);
        uint32_t seq;
        rc = pt_client_send(mb->c, type, parts, np, &seq);
        if (rc == 0) {
            pt_msg rep;
            rc = pt_client_wait(mb->c, seq, r->timeout_ms, &rep);
            if (rc == 0) {
                rc = reply_status(r, mb, &rep, want);
                if (rc == 0 && check)
                    rc = check(r, mb, &rep, ctx);
                if (rc == 0) {
                    r->st.requests++;
                    return 0;
                }
                if (rep.type == PT_ERROR)
                    return rc;
                continue;
            }
        }
        if (rc == PATCTL_ERR_TIMEOUT)
            r->st.timeouts++;
        /* libzmq reports a refused CURVE key only through the socket monitor */
        int auth = pt_client_stats(mb->c)->auth_refused > refused || rc == PATCTL_ERR_AUTH;
        rlog(r, "%s: %s request (attempt %d of %d): %s%s", mb->addr, pt_type_name(type), attempt + 1,
             r->retries + 1, patctl_strerror(rc),
             !auth ? "" : rc == PATCTL_ERR_AUTH ? ": the server does not accept this client's CURVE key "
                    "(client_key= must be on its --allow-keys list)" : "; authentication refused: the server "
                    "does not accept this client's CURVE key (client_key= must be on its --allow-keys list)");
        if (rc == PATCTL_ERR_INTERRUPTED || rc == PATCTL_ERR_AUTH)
            return rc; /* a refused key stays refused: no retries */
    }
    return rc;
}

/* ---- describe ---- */

typedef struct {
    struct patctl_device_desc desc;
    pt_desc_extra extra;
} desc_ctx;

static int check_desc(remote *r, member *mb, const pt_msg *rep, void *ctx)
{
    desc_ctx *dc = ctx;
    char err[256];
    if (pt_desc_from_json((const char *)rep->data, rep->len, &dc->desc, &dc->extra, err, sizeof(err))) {
        r->st.bad_replies++;
        rlog(r, "%s: %s", mb->addr, err);
        return PATCTL_ERR_FORMAT;
    }
    return 0;
}

static int same_shape(const struct patctl_device_desc *a, const struct patctl_device_desc *b)
{
    if (a->n_in != b->n_in || a->n_out != b->n_out || a->n_blocks != b->n_blocks ||
        strcmp(a->model, b->model) != 0 || a->in_lo != b->in_lo || a->in_hi != b->in_hi)
        return 0;
    for (int i = 0; i < a->n_blocks; i++) {
        const struct patctl_param_block *x = &a->blocks[i], *y = &b->blocks[i];
        if (x->rows != y->rows || x->cols != y->cols || x->lo != y->lo || x->hi != y->hi ||
            x->max_step != y->max_step || x->safe != y->safe)
            return 0;
    }
    return 1;
}

static int describe(remote *r, member *mb, struct patctl_device_desc *out, char *err, size_t errlen)
{
    char opts[64] = "";
    if (r->has_seed)
        snprintf(opts, sizeof(opts), "{\"seed\":\"%llu\"}", (unsigned long long)r->seed);
    pt_part p = {opts, strlen(opts)};
    desc_ctx dc;
    int rc = request(r, mb, PT_DESCRIBE, &p, 1, PT_DESCRIPTION, check_desc, &dc);
    if (rc) {
        snprintf(err, errlen, "%s: no device description: %s (%s)", mb->addr, patctl_strerror(rc), r->err);
        return rc;
    }
    if (dc.extra.mtu && dc.extra.mtu < r->lo.mtu && strncmp(mb->addr, "serial:", 7) == 0) {
        /* the device takes smaller frames: reopen the link with its mtu */
        r->lo.mtu = dc.extra.mtu;
        pt_client_close(&mb->c);
        if ((rc = pt_client_open(&mb->c, mb->addr, &r->lo, err, errlen)))
            return rc;
    }
    *out = dc.desc;
    mb->protocol = dc.extra.protocol;
    return 0;
}

/* ---- open / close ---- */

static void remote_close(void *state)
{
    remote *r = state;
    if (!r)
        return;
    for (int i = 0; i < r->n; i++)
        pt_client_close(&r->m[i].c);
    free(r);
}

static int parse_opts(remote *r, const struct patctl_option *o, int no, char *err, size_t errlen)
{
    int rc = options_check_known(o, no, known, "remote", err, errlen);
    if (rc)
        return rc;
    long timeout, retries, backoff, backoff_max, baud, mtu, lt, vjp;
    double corrupt;
    uint64_t seed;
    if ((rc = options_int(o, no, "timeout_ms", 2000, &timeout, err, errlen)) ||
        (rc = options_int(o, no, "retries", 3, &retries, err, errlen)) ||
        (rc = options_int(o, no, "backoff_ms", 50, &backoff, err, errlen)) ||
        (rc = options_int(o, no, "backoff_max_ms", 1000, &backoff_max, err, errlen)) ||
        (rc = options_int(o, no, "baud", 115200, &baud, err, errlen)) ||
        (rc = options_int(o, no, "mtu", 4096, &mtu, err, errlen)) ||
        (rc = options_int(o, no, "link_timeout_ms", 200, &lt, err, errlen)) ||
        (rc = options_int(o, no, "vjp", 1, &vjp, err, errlen)) ||
        (rc = options_float(o, no, "corrupt", 0, &corrupt, err, errlen)) ||
        (rc = options_u64(o, no, "seed", 0, &seed, err, errlen)))
        return rc;
    if (timeout < 1 || timeout > 3600000 || retries < 0 || retries > 100 || backoff < 0 || backoff_max < backoff ||
        baud < 50 || mtu < 16 || mtu > 65535 || lt < 1 || corrupt < 0 || corrupt >= 1) {
        snprintf(err, errlen, "remote: option out of range (timeout_ms >= 1, retries 0..100, 0 <= backoff_ms <= "
                 "backoff_max_ms, mtu 16..65535, 0 <= corrupt < 1)");
        return PATCTL_ERR_ARG;
    }
    r->timeout_ms = (int)timeout, r->retries = (int)retries, r->backoff_ms = (int)backoff;
    r->backoff_max_ms = (int)backoff_max, r->vjp = vjp != 0;
    r->has_seed = options_get(o, no, "seed") != NULL;
    r->seed = seed;
    pt_link_opts_default(&r->lo);
    r->lo.baud = (int)baud;
    r->lo.mtu = (uint32_t)mtu;
    r->lo.link_timeout_ms = (int)lt;
    r->lo.send_timeout_ms = r->timeout_ms; /* a request to an absent server times out like its reply */
    r->lo.corrupt_rate = corrupt;
    r->lo.corrupt_seed = seed + 7;
    const char *crc = options_get(o, no, "crc");
    if (crc && strcmp(crc, "full") != 0 && strcmp(crc, "header") != 0) {
        snprintf(err, errlen, "remote: option crc: expected header or full, got '%s'", crc);
        return PATCTL_ERR_ARG;
    }
    r->lo.header_crc = !(crc && strcmp(crc, "full") == 0);
    const char *sk = options_get(o, no, "server_key"), *ck = options_get(o, no, "client_key");
    if (sk && (rc = pt_curve_public_from(sk, r->lo.curve_server_public, err, errlen)))
        return rc;
    if (ck && !sk) {
        snprintf(err, errlen, "remote: option client_key needs server_key (CURVE is used only with the "
                 "server's public key)");
        return PATCTL_ERR_ARG;
    }
    if (ck && (rc = pt_curve_read(ck, r->lo.curve_public, r->lo.curve_secret, err, errlen)))
        return rc;
    const char *ep = options_get(o, no, "endpoint");
    if (!ep || !*ep) {
        snprintf(err, errlen, "remote: option endpoint is required (tcp://HOST:PORT, ipc:///path or "
                 "serial:/dev/ttyX; '|' between several for a pool)");
        return PATCTL_ERR_ARG;
    }
    const char *s = ep;
    while (*s) {
        const char *e = strchr(s, '|');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (r->n == REMOTE_MAX_MEMBERS || n == 0 || n >= sizeof(r->m[0].addr)) {
            snprintf(err, errlen, "remote: endpoint: at most %d non-empty addresses", REMOTE_MAX_MEMBERS);
            return PATCTL_ERR_ARG;
        }
        memcpy(r->m[r->n].addr, s, n);
        r->m[r->n].addr[n] = '\0';
        r->n++;
        s += n + (e ? 1 : 0);
    }
    return 0;
}

static int remote_open(void **state, const struct patctl_option *o, int no, struct patctl_device_desc *desc,
                       char *err, size_t errlen)
{
    remote *r = calloc(1, sizeof(*r));
    if (!r)
        return PATCTL_ERR_NOMEM;
    int rc = parse_opts(r, o, no, err, errlen);
    for (int i = 0; !rc && i < r->n; i++) {
        rc = pt_client_open(&r->m[i].c, r->m[i].addr, &r->lo, err, errlen);
        r->m[i].alive = 1;
    }
    for (int i = 0; !rc && i < r->n; i++) {
        struct patctl_device_desc d;
        rc = describe(r, &r->m[i], &d, err, errlen);
        if (rc)
            break;
        if (r->n > 1 && r->m[i].protocol < 2) {
            snprintf(err, errlen, "remote pool: %s speaks protocol %u; a pool needs protocol 2 (row offsets, "
                     "so that a split batch draws the same noise)", r->m[i].addr, r->m[i].protocol);
            rc = PATCTL_ERR_PROTOCOL;
        } else if (i == 0) {
            r->desc = d;
        } else if (!same_shape(&r->desc, &d)) {
            snprintf(err, errlen, "remote pool: %s describes a different device than %s (shapes or limits differ)",
                     r->m[i].addr, r->m[0].addr);
            rc = PATCTL_ERR_CONFIG;
        } else if (!(d.flags & PATCTL_DEV_HAS_VJP)) {
            r->desc.flags &= ~PATCTL_DEV_HAS_VJP;
        }
    }
    if (rc) {
        remote_close(r);
        return rc;
    }
    if (!r->vjp)
        r->desc.flags &= ~PATCTL_DEV_HAS_VJP;
    r->n_theta = 0;
    for (int b = 0; b < r->desc.n_blocks; b++)
        r->n_theta += (long)r->desc.blocks[b].rows * r->desc.blocks[b].cols;
    r->st.members = r->st.alive = r->n;
    r->opened = 1;
    *desc = r->desc;
    *state = r;
    return 0;
}

/* ---- run ---- */

typedef struct {
    uint64_t id;
    int rows;
    float *y;   /* [rows, n_out] destination */
} run_ctx;

static int check_result(remote *r, member *mb, const pt_msg *rep, void *ctx)
{
    run_ctx *rc = ctx;
    pt_result res;
    if (pt_result_parse(rep->data, rep->len, &res) || res.id != rc->id || (int64_t)res.batch != rc->rows ||
        (int32_t)res.n_out != r->desc.n_out) {
        r->st.bad_replies++;
        rlog(r, "%s: bad result for query %llu (expected %d x %d values)", mb->addr, (unsigned long long)rc->id,
             rc->rows, r->desc.n_out);
        return PATCTL_ERR_FORMAT;
    }
    if (rc->rows > 0)
        pt_f32_load(rc->y, res.y, (size_t)rc->rows * (size_t)r->desc.n_out);
    return 0;
}

/* Run rows [r0, r0 + rows) of q on member mb, synchronously with retries. */
static int run_part(remote *r, member *mb, const struct patctl_query *q, int r0, int rows, float *y)
{
    uint8_t head[PT_RUN_HEAD];
    pt_run_head(head, q->id, (uint32_t)rows, (uint32_t)r->n_theta, (uint32_t)r->desc.n_in,
                (uint32_t)(q->row0 + r0));
    pt_part parts[3] = {{head, sizeof(head)},
                        {q->theta, sizeof(float) * (size_t)r->n_theta},
                        {rows ? q->x + (size_t)r0 * r->desc.n_in : NULL, sizeof(float) * (size_t)rows * r->desc.n_in}};
    run_ctx c = {q->id, rows, rows ? y + (size_t)r0 * r->desc.n_out : NULL};
    return request(r, mb, PT_RUN, parts, 3, PT_RESULT, check_result, &c);
}

static void drop(remote *r, member *mb, int rc)
{
    if (!mb->alive)
        return;
    mb->alive = 0;
    mb->retry_at = now_s() + 1e-3 * r->backoff_max_ms;
    r->st.dropped++;
    r->st.alive--;
    rlog(r, "pool: dropping member %s (%s); %d of %d left", mb->addr, patctl_strerror(rc), r->st.alive, r->n);
}

/* Members to use now: the live ones, plus dropped ones whose wait is over. */
static int live_members(remote *r, member **out)
{
    int k = 0;
    double t = now_s();
    for (int i = 0; i < r->n; i++) {
        member *mb = &r->m[i];
        if (!mb->alive && t >= mb->retry_at) {
            mb->alive = 1; /* give it another chance */
            r->st.alive++;
        }
        if (mb->alive)
            out[k++] = mb;
    }
    return k;
}

static int remote_run(void *state, const struct patctl_query *q, float *y)
{
    remote *r = state;
    r->err[0] = '\0';
    if (r->n == 1)
        return run_part(r, &r->m[0], q, 0, q->batch, y);

    member *live[REMOTE_MAX_MEMBERS];
    int k = live_members(r, live);
    if (k == 0) {
        rlog(r, "pool: no live member");
        return PATCTL_ERR_DISCONNECTED;
    }
    if (q->batch == 0) {
        /* a parameter setting goes to every member */
        int ok = 0, last = PATCTL_ERR_DISCONNECTED;
        for (int i = 0; i < k; i++) {
            int rc = run_part(r, live[i], q, 0, 0, NULL);
            if (rc)
                drop(r, live[i], last = rc);
            else
                ok++;
        }
        return ok ? 0 : last;
    }
    /* split rows, send every part, then collect */
    int nparts = k < q->batch ? k : q->batch;
    int r0[REMOTE_MAX_MEMBERS], rows[REMOTE_MAX_MEMBERS], failed[REMOTE_MAX_MEMBERS];
    uint32_t seq[REMOTE_MAX_MEMBERS];
    uint8_t head[REMOTE_MAX_MEMBERS][PT_RUN_HEAD];
    int at = 0;
    for (int i = 0; i < nparts; i++) {
        r0[i] = at;
        rows[i] = q->batch / nparts + (i < q->batch % nparts ? 1 : 0);
        at += rows[i];
        pt_run_head(head[i], q->id, (uint32_t)rows[i], (uint32_t)r->n_theta, (uint32_t)r->desc.n_in,
                    (uint32_t)(q->row0 + r0[i]));
        pt_part parts[3] = {{head[i], PT_RUN_HEAD},
                            {q->theta, sizeof(float) * (size_t)r->n_theta},
                            {q->x + (size_t)r0[i] * r->desc.n_in, sizeof(float) * (size_t)rows[i] * r->desc.n_in}};
        failed[i] = pt_client_send(live[i]->c, PT_RUN, parts, 3, &seq[i]);
    }
    for (int i = 0; i < nparts; i++) {
        if (failed[i])
            continue;
        pt_msg rep;
        int rc = pt_client_wait(live[i]->c, seq[i], r->timeout_ms, &rep);
        if (rc == 0) {
            run_ctx c = {q->id, rows[i], y + (size_t)r0[i] * r->desc.n_out};
            rc = reply_status(r, live[i], &rep, PT_RESULT);
            if (rc == 0)
                rc = check_result(r, live[i], &rep, &c);
            if (rc == 0)
                r->st.requests++;
        } else if (rc == PATCTL_ERR_TIMEOUT) {
            r->st.timeouts++;
        }
        failed[i] = rc;
    }
    /* failed parts: drop their member, retry on the others (with retries) */
    int result = 0;
    for (int i = 0; i < nparts; i++) {
        if (!failed[i])
            continue;
        drop(r, live[i], failed[i]);
        int done = 0;
        for (int j = 0; j < k && !done; j++) {
            if (!live[j]->alive)
                continue;
            r->st.moved++;
            rlog(r, "pool: part of query %llu (%d rows) moved from %s to %s", (unsigned long long)q->id, rows[i],
                 live[i]->addr, live[j]->addr);
            int rc = run_part(r, live[j], q, r0[i], rows[i], y);
            if (rc == 0)
                done = 1;
            else
                drop(r, live[j], rc);
        }
        if (!done)
            result = failed[i];
    }
    return result;
}

/* ---- vjp ---- */

typedef struct {
    uint64_t id;
    int B;
    float *gx, *gt;
} vjp_ctx;

static int check_grad(remote *r, member *mb, const pt_msg *rep, void *ctx)
{
    vjp_ctx *v = ctx;
    pt_gradient g;
    uint32_t want = (v->gx ? 1u : 0u) | (v->gt ? 2u : 0u);
    if (pt_gradient_parse(rep->data, rep->len, &g) || g.id != v->id || (int64_t)g.batch != v->B ||
        (int32_t)g.n_in != r->desc.n_in || (long)g.n_theta != r->n_theta || g.have != want) {
        r->st.bad_replies++;
        rlog(r, "%s: bad gradient for query %llu", mb->addr, (unsigned long long)v->id);
        return PATCTL_ERR_FORMAT;
    }
    if (v->gx)
        pt_f32_load(v->gx, g.gx, (size_t)v->B * r->desc.n_in);
    if (v->gt)
        pt_f32_load(v->gt, g.gtheta, (size_t)r->n_theta);
    return 0;
}

static int remote_vjp(void *state, const struct patctl_query *q, const float *gy, float *gx, float *gtheta)
{
    remote *r = state;
    uint8_t head[PT_VJP_HEAD];
    uint32_t want = (gx ? 1u : 0u) | (gtheta ? 2u : 0u);
    pt_vjp_head(head, q->id, (uint32_t)q->batch, (uint32_t)r->n_theta, (uint32_t)r->desc.n_in,
                (uint32_t)r->desc.n_out, want, (uint32_t)q->row0);
    pt_part parts[4] = {{head, sizeof(head)},
                        {q->theta, sizeof(float) * (size_t)r->n_theta},
                        {q->x, sizeof(float) * (size_t)q->batch * r->desc.n_in},
                        {gy, sizeof(float) * (size_t)q->batch * r->desc.n_out}};
    vjp_ctx c = {q->id, q->batch, gx, gtheta};
    int rc = PATCTL_ERR_DISCONNECTED;
    for (int i = 0; i < r->n; i++) {
        if (!r->m[i].alive)
            continue;
        rc = request(r, &r->m[i], PT_VJP, parts, 4, PT_GRADIENT, check_grad, &c);
        if (rc == 0)
            return 0;
    }
    return rc;
}

/* ---- make safe ---- */

static int remote_make_safe(void *state)
{
    remote *r = state;
    int first = 0;
    for (int i = 0; i < r->n; i++) {
        int rc = request(r, &r->m[i], PT_MAKE_SAFE, NULL, 0, PT_OK, NULL, NULL);
        if (rc && !first)
            first = rc;
    }
    return first;
}

static const char *remote_last_error(void *state)
{
    remote *r = state;
    return r && r->err[0] ? r->err : NULL;
}

const struct patctl_driver patctl_driver_remote = {
    .abi_version = PATCTL_DEVICE_ABI_VERSION,
    .name = "remote",
    .summary = "a device behind patctl serve, a Python lab server or a microcontroller (ZeroMQ or serial)",
    .options_help =
        "endpoint=ADDR   tcp://HOST:PORT, ipc:///path or serial:/dev/ttyX ('|' between several: a pool)\n"
        "timeout_ms=2000 retries=3 backoff_ms=50 backoff_max_ms=1000   per request\n"
        "server_key=KEY|FILE   the server's CURVE public key (enables CURVE)\n"
        "client_key=FILE       own CURVE key pair (keygen .key; for servers with --allow-keys;\n"
        "                      default: a fresh ephemeral pair)\n"
        "crc=header|full       ZeroMQ frame CRC coverage\n"
        "baud=115200 mtu=4096 link_timeout_ms=200   serial line\n"
        "vjp=1           forward the exact VJP of simulated servers (--mode ideal)\n",
    .flags = PATCTL_DRV_SEEDED,
    .open = remote_open,
    .run = remote_run,
    .vjp = remote_vjp,
    .make_safe = remote_make_safe,
    .close = remote_close,
    .last_error = remote_last_error,
};

int remote_get_stats(const device *d, remote_stats *out)
{
    if (!d || d->drv != &patctl_driver_remote || !d->state)
        return PATCTL_ERR_ARG;
    const remote *r = d->state;
    *out = r->st;
    out->stale = 0;
    for (int i = 0; i < r->n; i++)
        out->stale += r->m[i].c ? pt_client_stats(r->m[i].c)->stale : 0;
    return 0;
}

const pt_link_stats *remote_member_link_stats(const device *d, int i)
{
    if (!d || d->drv != &patctl_driver_remote || !d->state)
        return NULL;
    const remote *r = d->state;
    return i >= 0 && i < r->n && r->m[i].c ? pt_client_stats(r->m[i].c) : NULL;
}
