/* Transport benchmark: a 32 x 1610 float32 batch (206 080 bytes) sent to a
 * server and the same number of floats sent back, timed per round trip,
 * side by side in one run:
 *
 *   raw libzmq      DEALER zmq_send(buffer) -> ROUTER echo (zero-copy) ->
 *                   zmq_recv(buffer): the same bytes, nothing else
 *   patctl          pt_client RUN frame (query id, B, theta of 0 floats, x)
 *                   -> pt_server, parse, RESULT frame with y = x -> parse
 *                   and copy y out; header CRC (the default) and full CRC
 *   patctl device   the whole remote path: device_run() (client boundary)
 *                   -> remote driver -> server adapter -> device_run()
 *                   (server boundary) -> an echo driver, and back
 *
 * over tcp loopback and ipc, then the serial framing efficiency of the same
 * message (float bytes / bytes on the line) for several MTUs.
 *
 *   build/bench_transport [ROUND_TRIPS=1000]
 *
 * Never run by ctest; the figures go into the notes. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "devices/device.h"
#include "devices/remote/remote.h"
#include "protocols/frame.h"
#include "protocols/link.h"
#include "protocols/slink.h"

#define ROWS 32
#define COLS 1610
#define NF (ROWS * COLS)

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---- raw libzmq ---- */

typedef struct {
    void *ctx;
    char addr[128];
    int n;
    volatile int ready;
} raw_arg;

static void *raw_server(void *a)
{
    raw_arg *r = a;
    void *s = zmq_socket(r->ctx, ZMQ_ROUTER);
    int z = 2000; /* let the last echo leave before the socket closes */
    zmq_setsockopt(s, ZMQ_LINGER, &z, sizeof(z));
    zmq_bind(s, r->addr);
    size_t l = sizeof(r->addr);
    zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, r->addr, &l);
    r->ready = 1;
    for (int i = 0; i < r->n;) {
        zmq_msg_t id, m;
        zmq_msg_init(&id);
        zmq_msg_init(&m);
        if (zmq_msg_recv(&id, s, 0) < 0 || zmq_msg_recv(&m, s, 0) < 0) {
            zmq_msg_close(&id);
            zmq_msg_close(&m);
            continue; /* EINTR */
        }
        zmq_msg_send(&id, s, ZMQ_SNDMORE);
        zmq_msg_send(&m, s, 0);
        i++;
    }
    zmq_close(s);
    return NULL;
}

static double bench_raw(const char *addr, int n, float *x, float *y)
{
    raw_arg r = {zmq_ctx_new(), "", n + 50, 0};
    snprintf(r.addr, sizeof(r.addr), "%s", addr);
    pthread_t t;
    pthread_create(&t, NULL, raw_server, &r);
    while (!r.ready)
        usleep(100);
    void *c = zmq_socket(r.ctx, ZMQ_DEALER);
    int z = 0;
    zmq_setsockopt(c, ZMQ_LINGER, &z, sizeof(z));
    int tmo = 5000;
    zmq_setsockopt(c, ZMQ_RCVTIMEO, &tmo, sizeof(tmo));
    zmq_connect(c, r.addr);
    double t0 = 0;
    for (int i = 0; i < n + 50; i++) {
        if (i == 50)
            t0 = now();
        if (zmq_send(c, x, sizeof(float) * NF, 0) < 0) {
            fprintf(stderr, "raw: send: %s\n", zmq_strerror(zmq_errno()));
            exit(1);
        }
        int got;
        while ((got = zmq_recv(c, y, sizeof(float) * NF, 0)) < 0 && zmq_errno() == EINTR)
            ;
        if (got < 0) {
            fprintf(stderr, "raw: no echo for round trip %d: %s\n", i, zmq_strerror(zmq_errno()));
            exit(1);
        }
    }
    double dt = (now() - t0) / n;
    pthread_join(t, NULL);
    zmq_close(c);
    zmq_ctx_term(r.ctx);
    if (memcmp(x, y, sizeof(float) * NF))
        fprintf(stderr, "raw: echo mismatch\n");
    return dt;
}

/* ---- patctl transport ---- */

typedef struct {
    pt_server *s;
    int n;
} pt_arg;

static void *pt_server_main(void *a)
{
    pt_arg *r = a;
    for (int i = 0; i < r->n; i++) {
        pt_msg m;
        if (pt_server_recv(r->s, 5000, &m))
            break;
        pt_run run;
        if (m.type != PT_RUN || pt_run_parse(m.data, m.len, &run))
            break;
        uint8_t head[PT_RESULT_HEAD];
        pt_result_head(head, run.id, run.batch, run.n_in);
        pt_part p[2] = {{head, sizeof(head)}, {run.x, 4u * run.batch * run.n_in}};
        pt_server_reply(r->s, &m, PT_RESULT, p, 2);
    }
    return NULL;
}

static double bench_pt(const char *addr, int n, int header_crc, float *x, float *y)
{
    pt_link_opts o;
    pt_link_opts_default(&o);
    o.header_crc = header_crc;
    char err[256];
    pt_server *s;
    pt_client *c;
    if (pt_server_open(&s, addr, &o, err, sizeof(err))) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    if (pt_client_open(&c, pt_server_address(s), &o, err, sizeof(err))) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    pt_arg r = {s, n + 50};
    pthread_t t;
    pthread_create(&t, NULL, pt_server_main, &r);
    double t0 = 0;
    for (int i = 0; i < n + 50; i++) {
        if (i == 50)
            t0 = now();
        uint8_t head[PT_RUN_HEAD];
        pt_run_head(head, (uint64_t)i, ROWS, 0, COLS, 0);
        pt_part p[2] = {{head, sizeof(head)}, {x, sizeof(float) * NF}};
        uint32_t seq;
        pt_msg rep;
        pt_result res;
        if (pt_client_send(c, PT_RUN, p, 2, &seq) || pt_client_wait(c, seq, 5000, &rep) ||
            pt_result_parse(rep.data, rep.len, &res) || res.batch != ROWS || res.n_out != COLS) {
            fprintf(stderr, "patctl transport: failed round trip\n");
            exit(1);
        }
        pt_f32_load(y, res.y, NF);
    }
    double dt = (now() - t0) / n;
    pthread_join(t, NULL);
    pt_client_close(&c);
    pt_server_close(&s);
    if (memcmp(x, y, sizeof(float) * NF))
        fprintf(stderr, "patctl: echo mismatch\n");
    return dt;
}

/* ---- the whole remote device path with an echo driver ---- */

static int echo_open(void **st, const struct patctl_option *o, int n, struct patctl_device_desc *d, char *err,
                     size_t errlen)
{
    (void)o, (void)n, (void)err, (void)errlen;
    memset(d, 0, sizeof(*d));
    snprintf(d->model, sizeof(d->model), "echo");
    d->n_in = d->n_out = COLS;
    d->in_lo = -10, d->in_hi = 10;
    d->n_blocks = 1;
    d->blocks[0] = (struct patctl_param_block){.name = "g", .rows = 1, .cols = 1, .lo = -1, .hi = 1};
    *st = d;
    return 0;
}
static int echo_run(void *st, const struct patctl_query *q, float *y)
{
    (void)st;
    if (q->batch)
        memcpy(y, q->x, sizeof(float) * (size_t)q->batch * COLS);
    return 0;
}
static int echo_safe(void *st) { return (void)st, 0; }
static void echo_close(void *st) { (void)st; }
static const struct patctl_driver echo_drv = {
    .abi_version = PATCTL_DEVICE_ABI_VERSION, .name = "echo", .summary = "y = x",
    .open = echo_open, .run = echo_run, .make_safe = echo_safe, .close = echo_close,
};

typedef struct {
    device *d;
    pt_server *s;
    volatile sig_atomic_t stop;
} dev_arg;

static void *dev_server(void *a)
{
    dev_arg *r = a;
    serve_opts so;
    memset(&so, 0, sizeof(so));
    so.log = stderr;
    remote_serve(&r->d, r->s, &so, &r->stop, 0, NULL);
    return NULL;
}

static double bench_device(const char *addr, int n, float *x, float *y)
{
    char err[512];
    dev_arg r;
    memset(&r, 0, sizeof(r));
    if (device_open_driver(&r.d, "echo", &echo_drv, NULL, 0, 0, err, sizeof(err)) ||
        pt_server_open(&r.s, addr, NULL, err, sizeof(err))) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    pthread_t t;
    pthread_create(&t, NULL, dev_server, &r);
    char opts[300];
    snprintf(opts, sizeof(opts), "%s", pt_server_address(r.s));
    struct patctl_option o[1] = {{"endpoint", opts}};
    device *d;
    if (device_open(&d, "remote", "remote", o, 1, 0, err, sizeof(err))) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    float th[1] = {0};
    double t0 = 0;
    for (int i = 0; i < n + 50; i++) {
        if (i == 50)
            t0 = now();
        if (device_run(d, th, x, ROWS, y)) {
            fprintf(stderr, "device path: %s\n", d->err);
            exit(1);
        }
    }
    double dt = (now() - t0) / n;
    device_close(&d);
    r.stop = 1;
    pthread_join(t, NULL);
    pt_server_close(&r.s);
    device_close(&r.d);
    return dt;
}

/* ---- serial framing ---- */

static int count_sink(void *user, const uint8_t *p, size_t n)
{
    (void)p;
    *(uint64_t *)user += n;
    return 0;
}

static void serial_efficiency(const float *x)
{
    static uint8_t msg[PT_RUN_HEAD + 4 * NF];
    pt_run_head(msg, 1, ROWS, 0, COLS, 0);
    memcpy(msg + PT_RUN_HEAD, x, sizeof(float) * NF);
    static const uint32_t mtus[] = {64, 256, 1024, 4096, 16384};
    printf("\nserial framing of the same RUN message (%zu float bytes, %zu payload bytes):\n", sizeof(float) * (size_t)NF,
           sizeof(msg));
    printf("  %-8s %-10s %-12s %-12s %s\n", "mtu", "frames", "line bytes", "efficiency", "(float bytes / line bytes)");
    for (size_t i = 0; i < sizeof(mtus) / sizeof(mtus[0]); i++) {
        uint32_t mtu = mtus[i];
        uint8_t *fin = malloc(mtu + PT_OVERHEAD), *fout = malloc(mtu + PT_OVERHEAD), have[8], in[16];
        uint64_t bytes = 0;
        pt_slink l;
        pt_slink_init(&l, 0, mtu, count_sink, &bytes, fin, mtu + PT_OVERHEAD, fout, in, sizeof(in), have, sizeof(have));
        pt_slink_send(&l, PT_RUN, 1, msg, sizeof(msg));
        printf("  %-8u %-10llu %-12llu %.2f %%\n", mtu, (unsigned long long)l.st.frames_out, (unsigned long long)bytes,
               100.0 * (double)(sizeof(float) * NF) / (double)bytes);
        free(fin);
        free(fout);
    }
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    int n = argc > 1 ? atoi(argv[1]) : 1000;
    if (n < 10)
        n = 10;
    signal(SIGPIPE, SIG_IGN);
    float *x = malloc(sizeof(float) * NF), *y = malloc(sizeof(float) * NF);
    for (int i = 0; i < NF; i++)
        x[i] = sinf(0.001f * (float)i);
    printf("round trip of a %d x %d float32 batch (%d bytes each way), %d round trips per variant\n"
           "(5 interleaved rounds, median round), one run:\n\n", ROWS, COLS,
           (int)(sizeof(float) * NF), n);
    printf("  %-22s %12s %12s %12s %12s\n", "", "raw libzmq", "patctl", "patctl", "patctl");
    printf("  %-22s %12s %12s %12s %12s\n", "", "", "header CRC", "full CRC", "device path");
    const char *addrs[2] = {"tcp://127.0.0.1:*", "ipc:///tmp/patctl-bench.ipc"};
    /* the variants take turns in 5 rounds of n/5 round trips each, and the
     * median round is reported, so a busy machine disturbs them alike */
    enum { ROUNDS = 5 };
    int per = n / ROUNDS;
    for (int k = 0; k < 2; k++) {
        double v[4][ROUNDS];
        for (int r = 0; r < ROUNDS; r++) {
            char a[4][128]; /* a fresh ipc path per server */
            for (int i = 0; i < 4; i++) {
                if (k)
                    snprintf(a[i], sizeof(a[i]), "ipc:///tmp/patctl-bench-%d-%d-%d.ipc", (int)getpid(), r, i);
                else
                    snprintf(a[i], sizeof(a[i]), "%s", addrs[0]);
            }
            v[0][r] = bench_raw(a[0], per, x, y);
            v[1][r] = bench_pt(a[1], per, 1, x, y);
            v[2][r] = bench_pt(a[2], per, 0, x, y);
            v[3][r] = bench_device(a[3], per, x, y);
            if (k)
                for (int i = 0; i < 4; i++)
                    unlink(a[i] + 6);
        }
        double med[4];
        for (int i = 0; i < 4; i++) {
            for (int a = 0; a < ROUNDS; a++) /* sort */
                for (int b = a + 1; b < ROUNDS; b++)
                    if (v[i][b] < v[i][a]) {
                        double t = v[i][a];
                        v[i][a] = v[i][b];
                        v[i][b] = t;
                    }
            med[i] = v[i][ROUNDS / 2];
        }
        printf("  %-22s %9.1f us %9.1f us %9.1f us %9.1f us\n", k ? "ipc" : "tcp loopback", 1e6 * med[0],
               1e6 * med[1], 1e6 * med[2], 1e6 * med[3]);
        printf("  %-22s %12s %11.2fx %11.2fx %11.2fx\n", "  ratio to raw", "1.00x", med[1] / med[0],
               med[2] / med[0], med[3] / med[0]);
    }
    printf("\n  (goal for patctl's transport: <= 1.2x raw libzmq)\n");
    serial_efficiency(x);
    free(x);
    free(y);
    return 0;
}
