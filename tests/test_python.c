/* The Python lab module (python/patctl_device.py) against the controller:
 * its demo device served by /usr/bin/python3, opened with the `remote`
 * driver; results checked against the formula, limits kept by both sides.
 * Skipped with a message when /usr/bin/python3 lacks zmq or numpy. */
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "devices/device.h"
#include "devices/options.h"
#include "devices/remote/remote.h"

extern char **environ;

static void test_python_device(void **state)
{
    (void)state;
    if (access("/usr/bin/python3", X_OK) != 0 ||
        system("/usr/bin/python3 -c 'import zmq, numpy' >/dev/null 2>&1") != 0) {
        printf("  skipped: /usr/bin/python3 with python3-zmq and python3-numpy is needed\n");
        skip();
    }
    char ep[128];
    snprintf(ep, sizeof(ep), "ipc:///tmp/patctl-test-%d-py.ipc", (int)getpid());
    const char *argv[] = {"/usr/bin/python3", PATCTL_SOURCE_DIR "/python/patctl_device.py", "--demo", ep, NULL};
    int fd[2];
    assert_int_equal(pipe(fd), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fd[1], 1);
    posix_spawn_file_actions_addclose(&fa, fd[0]);
    pid_t pid;
    assert_int_equal(posix_spawn(&pid, argv[0], &fa, NULL, (char *const *)argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    close(fd[1]);
    FILE *f = fdopen(fd[0], "r");
    char line[256] = "";
    int ready = fgets(line, sizeof(line), f) && strstr(line, "ready on");
    fclose(f);
    if (!ready) {
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
        fail_msg("the Python server did not start");
    }
    char opts[200], err[512];
    snprintf(opts, sizeof(opts), "endpoint=%s,timeout_ms=5000", ep);
    struct patctl_option *o;
    int no = options_parse(opts, &o);
    device *d = NULL;
    int rc = device_open(&d, "lab", "remote", o, no, 1, err, sizeof(err));
    free(o);
    if (rc) {
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
        fail_msg("device_open: %s", err);
    }
    assert_string_equal(d->desc.model, "tanh-layer");
    assert_int_equal(d->n_theta, 15);
    assert_true(d->desc.blocks[0].max_step == 0.5f);
    float th[15], x[8 * 4], y[8 * 3];
    for (int i = 0; i < 15; i++)
        th[i] = 0.1f * (float)(i % 7) - 0.3f;
    for (int i = 0; i < 32; i++)
        x[i] = 0.05f * (float)(i % 13) - 0.3f;
    x[5] = 7.0f; /* outside [-1, 1]: clamped by the controller's boundary */
    assert_int_equal(device_run(d, th, x, 8, y), 0);
    for (int s = 0; s < 8; s++)
        for (int k = 0; k < 3; k++) {
            double a = th[12 + k];
            for (int i = 0; i < 4; i++)
                a += (double)th[k * 4 + i] * d->sent_x[s * 4 + i];
            assert_true(fabs(tanh(a) - y[s * 3 + k]) < 1e-5);
        }
    assert_int_equal(d->st.clamped, 1);
    /* a step of 1.9 in W with max_step 0.5: ramped through the server */
    th[0] = 1.9f;
    assert_int_equal(device_run(d, th, x, 8, y), 0);
    assert_true(d->st.ramp_steps >= 3);
    assert_int_equal(device_make_safe(d), 0);
    device_close(&d);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    unlink(ep + 6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_python_device)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
