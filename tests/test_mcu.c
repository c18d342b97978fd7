/* The device-side library against the controller: the example device
 * (protocols/mcu/example_device.c) runs the library in a thread on one end
 * of a pty pair, with the UART as two callbacks on a file descriptor; the
 * controller opens it with the `remote` driver through libserialport on the
 * other end.  Clean line and 1 % of the bytes corrupted. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>
#include <cmocka.h>

#include "devices/device.h"
#include "devices/options.h"
#include "protocols/mcu/example_device.h"
#include "ptypair.h"

typedef struct {
    int fd;
    volatile int stop;
    pmcu dev;
    pthread_t t;
} mcu_t;

static int u_read(void *user)
{
    mcu_t *m = user;
    uint8_t b;
    return read(m->fd, &b, 1) == 1 ? b : -1;
}

static int u_write(void *user, const uint8_t *p, size_t n)
{
    mcu_t *m = user;
    while (n > 0) {
        ssize_t w = write(m->fd, p, n);
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                usleep(50);
                continue;
            }
            return PATCTL_ERR_IO;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void *mcu_main(void *arg)
{
    mcu_t *m = arg;
    while (!m->stop)
        if (pmcu_poll(&m->dev, 0) == 0)
            usleep(100);
    return NULL;
}

static void mcu_start(mcu_t *m, const char *path)
{
    memset(m, 0, sizeof(*m));
    m->fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK);
    assert_true(m->fd >= 0);
    struct termios t;
    if (tcgetattr(m->fd, &t) == 0) {
        cfmakeraw(&t);
        tcsetattr(m->fd, TCSANOW, &t);
    }
    assert_int_equal(example_device_init(&m->dev, u_read, u_write, m), 0);
    pthread_create(&m->t, NULL, mcu_main, m);
}

static void mcu_stop(mcu_t *m)
{
    m->stop = 1;
    pthread_join(m->t, NULL);
    close(m->fd);
}

/* what the example device computes */
static void expect_layer(const float *th, const float *x, int B, const float *y)
{
    for (int s = 0; s < B; s++)
        for (int o = 0; o < 3; o++) {
            float a = th[12 + o];
            for (int i = 0; i < 4; i++)
                a += th[o * 4 + i] * x[s * 4 + i];
            float want = tanhf(a);
            if (fabsf(want - y[s * 3 + o]) > 1e-6f)
                fail_msg("sample %d output %d: %.9g, expected %.9g", s, o, (double)y[s * 3 + o], (double)want);
        }
}

static void session(double corrupt, int runs)
{
    ptypair pp;
    if (ptypair_open(&pp, corrupt, 3)) {
        printf("  no pseudo-terminals here: skipped\n");
        skip();
    }
    static mcu_t m;
    mcu_start(&m, pp.link_a);
    char opts[300], err[512];
    snprintf(opts, sizeof(opts), "endpoint=serial:%s,timeout_ms=20000,link_timeout_ms=%d,mtu=%d", pp.port_b,
             corrupt > 0 ? 10 : 100, corrupt > 0 ? 32 : 4096);
    struct patctl_option *o;
    int no = options_parse(opts, &o);
    device *d = NULL;
    unsigned safe0 = example_safe_calls;
    int rc = device_open(&d, "mcu", "remote", o, no, 1, err, sizeof(err));
    free(o);
    if (rc)
        fail_msg("device_open: %s", err);
    /* the description came from the device, with its mtu */
    assert_string_equal(d->desc.model, "tanh-layer");
    assert_int_equal(d->desc.n_in, 4);
    assert_int_equal(d->desc.n_out, 3);
    assert_int_equal(d->n_theta, 15);
    assert_true(d->desc.blocks[0].max_step == 0.5f);
    assert_true(example_safe_calls > safe0); /* made safe on open */

    float th[15], x[16 * 4], y[16 * 3];
    unsigned s = 11;
    for (int k = 0; k < runs; k++) {
        for (int i = 0; i < 15; i++) {
            s = s * 1103515245u + 12345u;
            th[i] = ((float)((s >> 16) % 2001) / 1000.0f - 1.0f) * (k == 0 ? 0.2f : 1.9f);
        }
        int B = 1 + k % 16;
        for (int i = 0; i < 4 * B; i++) {
            s = s * 1103515245u + 12345u;
            x[i] = (float)((s >> 16) % 2001) / 1000.0f - 1.0f;
        }
        rc = device_run(d, th, x, B, y);
        if (rc)
            fail_msg("run %d: %s (%s)", k, patctl_strerror(rc), d->err);
        expect_layer(d->sent_theta, d->sent_x, B, y);
    }
    /* large parameter steps were ramped in steps of max_step 0.5 */
    assert_true(d->st.ramp_steps > 0);
    unsigned safe1 = example_safe_calls;
    assert_int_equal(device_make_safe(d), 0);
    assert_int_equal(example_safe_calls, safe1 + 1);
    printf("  corrupt %.2f: %d runs, %llu ramp steps, device answered %u requests (%u errors), "
           "line: %llu of %llu bytes corrupted\n",
           corrupt, runs, (unsigned long long)d->st.ramp_steps, m.dev.requests, m.dev.errors,
           (unsigned long long)pp.corrupted, (unsigned long long)pp.relayed);
    device_close(&d);
    mcu_stop(&m);
    if (corrupt > 0)
        assert_true(pp.corrupted > 0);
    ptypair_close(&pp);
}

static void test_mcu_clean(void **state)
{
    (void)state;
    session(0, 40);
}

static void test_mcu_noisy(void **state)
{
    (void)state;
    session(0.01, 25);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mcu_clean),
        cmocka_unit_test(test_mcu_noisy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
