/* The patctl binary: the train command writes summary.json with the promised
 * keys; bad options and missing data give clear errors and exit codes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#include <cjson/cJSON.h>

#ifndef PATCTL_BIN
#error "PATCTL_BIN must name the patctl binary"
#endif

/* Run a shell command, capture stdout+stderr into out, return the exit status. */
static int run(const char *cmd, char *out, size_t n)
{
    char full[2048];
    snprintf(full, sizeof(full), "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    assert_non_null(p);
    size_t got = fread(out, 1, n - 1, p);
    out[got] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_help_and_version(void **state)
{
    (void)state;
    char out[8192];
    assert_int_equal(run(PATCTL_BIN " --help", out, sizeof(out)), 0);
    assert_non_null(strstr(out, "train"));
    assert_int_equal(run(PATCTL_BIN " train --help", out, sizeof(out)), 0);
    assert_non_null(strstr(out, "--mode"));
    assert_int_equal(run(PATCTL_BIN " version", out, sizeof(out)), 0);
    assert_non_null(strstr(out, "openblas"));
}

static void test_bad_options(void **state)
{
    (void)state;
    char out[8192];
    assert_int_equal(run(PATCTL_BIN " train --mode bogus", out, sizeof(out)), 2);
    assert_non_null(strstr(out, "bogus"));
    assert_int_equal(run(PATCTL_BIN " train --epochs many", out, sizeof(out)), 2);
    assert_non_null(strstr(out, "--epochs"));
    assert_int_equal(run(PATCTL_BIN " train --frobnicate", out, sizeof(out)), 2);
    assert_int_equal(run(PATCTL_BIN " nosuchcommand", out, sizeof(out)), 2);
    assert_int_equal(run(PATCTL_BIN " train --data /nonexistent/dir --out /tmp/patctl-cli-nodata", out,
                         sizeof(out)), 1);
    assert_non_null(strstr(out, "/nonexistent/dir/train-images-idx3-ubyte.gz"));
}

/* patctl serve refuses bad invocations with a message that names the
 * problem, before it binds or serves anything. */
static void test_serve_errors(void **state)
{
    (void)state;
    char out[8192], cmd[1024];
    assert_int_equal(run(PATCTL_BIN " serve --zmq ipc:///tmp/patctl-cli-serve.ipc", out, sizeof(out)), 2);
    assert_non_null(strstr(out, "needs --device"));
    assert_int_equal(run(PATCTL_BIN " serve --device oscillators --zmq tcp://127.0.0.1:5998 --allow-keys /tmp/x",
                         out, sizeof(out)), 2);
    assert_non_null(strstr(out, "needs --curve-key"));
    /* a non-loopback address without CURVE keys is refused */
    assert_int_equal(run(PATCTL_BIN " serve --device oscillators --zmq tcp://10.1.2.3:5998", out, sizeof(out)), 1);
    assert_non_null(strstr(out, "not a loopback address"));
    assert_int_equal(run(PATCTL_BIN " serve --device nosuchdriver --zmq ipc:///tmp/patctl-cli-serve.ipc", out,
                         sizeof(out)), 1);
    assert_non_null(strstr(out, "no device driver 'nosuchdriver'"));
    assert_int_equal(run(PATCTL_BIN " serve --device oscillators n=0 --zmq ipc:///tmp/patctl-cli-serve.ipc", out,
                         sizeof(out)), 1);
    assert_non_null(strstr(out, "option n"));
    /* a malformed allowlist names file and line */
    char dir[] = "/tmp/patctl-cli-XXXXXX";
    assert_non_null(mkdtemp(dir));
    snprintf(cmd, sizeof(cmd), PATCTL_BIN " keygen --out %s/srv > /dev/null && printf '# clients\\ngarbage\\n' > %s/allow",
             dir, dir);
    assert_int_equal(run(cmd, out, sizeof(out)), 0);
    snprintf(cmd, sizeof(cmd),
             PATCTL_BIN " serve --device oscillators --zmq tcp://127.0.0.1:5998 --curve-key %s/srv.key --allow-keys %s/allow",
             dir, dir);
    assert_int_equal(run(cmd, out, sizeof(out)), 1);
    assert_non_null(strstr(out, "/allow:2:"));
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_train_writes_summary(void **state)
{
    (void)state;
    char dir[] = "/tmp/patctl-cli-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char cmd[1024], out[16384];
    snprintf(cmd, sizeof(cmd), PATCTL_BIN " train --synthetic --epochs 1 --train-limit 320 "
             "--test-limit 200 --seed 4 --mode pat --out %s/run", dir);
    int st = run(cmd, out, sizeof(out));
    printf("%s", out);
    assert_int_equal(st, 0);
    assert_non_null(strstr(out, "result:"));
    char path[512];
    snprintf(path, sizeof(path), "%s/run/summary.json", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    static char text[1 << 16];
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    cJSON *j = cJSON_Parse(text);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "mode")->valuestring, "pat");
    assert_int_equal(cJSON_GetObjectItem(j, "seed")->valueint, 4);
    assert_int_equal(cJSON_GetObjectItem(j, "epochs")->valueint, 1);
    assert_int_equal(cJSON_GetObjectItem(j, "train_limit")->valueint, 320);
    double acc = cJSON_GetObjectItem(j, "test_accuracy")->valuedouble;
    assert_true(acc > 0.0 && acc <= 1.0);
    assert_true(cJSON_GetObjectItem(j, "train_seconds")->valuedouble > 0);
    /* 10 steps x 2 physical layers + 1 eval batch x 2 */
    assert_int_equal(cJSON_GetObjectItem(j, "device_queries")->valueint, 22);
    assert_string_equal(cJSON_GetObjectItem(j, "status")->valuestring, "success");
    cJSON_Delete(j);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_and_version),
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_serve_errors),
        cmocka_unit_test(test_train_writes_summary),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
