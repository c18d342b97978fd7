/* patctl serve: expose a device (built-in driver or plugin .so) to remote
 * controllers over ZeroMQ (ROUTER) or a serial line, every request through
 * the device's safety boundary. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controller/commands.h"
#include "devices/device.h"
#include "devices/options.h"
#include "devices/remote/remote.h"

static void serve_usage(FILE *f)
{
    fprintf(f,
        "usage: patctl serve --device DRIVER [--options k=v,...] [k=v ...]\n"
        "                    (--zmq ENDPOINT | --serial PORT) [OPTIONS]\n"
        "\n"
        "Serves one device to remote controllers (the `remote` driver, e.g.\n"
        "driver = remote, endpoint=tcp://127.0.0.1:5555).  Every request goes through\n"
        "this device's safety boundary (limits, ramps, NaN/Inf checks).\n"
        "\n"
        "  --device D        built-in driver name or plugin .so path\n"
        "  --options k=v,..  driver options (bare k=v arguments are added too)\n"
        "  --zmq ENDPOINT    e.g. tcp://127.0.0.1:5555, ipc:///tmp/dev.ipc; a non-loopback\n"
        "                    tcp address needs --curve-key\n"
        "  --serial PORT     e.g. /dev/ttyUSB0 (libserialport)\n"
        "  --baud N          serial baud rate (default 115200)\n"
        "  --mtu N           serial: largest frame payload (default 4096)\n"
        "  --curve-key FILE  CURVE key pair from `patctl keygen` (clients need FILE.pub)\n"
        "  --allow-keys FILE only the CURVE clients listed in FILE may connect (needs\n"
        "                    --curve-key): one client public key per line, as in its\n"
        "                    keygen .pub (40 Z85 characters or 'public = KEY'); '#'\n"
        "                    comment lines and blank lines allowed.  Clients set\n"
        "                    client_key=THEIR.key; refused clients get no data and are\n"
        "                    logged here with their key.  Without it any client that\n"
        "                    has FILE.pub may connect\n"
        "  --seed N          device seed for seeded simulators (default: the client's\n"
        "                    session seed; a seed= option pins it)\n"
        "  --limits P        clamp (default) | reject\n"
        "  --steps P         ramp (default) | refuse\n"
        "  --max-requests N  stop after N requests (default: until Ctrl-C)\n"
        "  --verbose         a log line per request\n"
        "fault injection (tests): --fault-die-after N, --fault-delay-every N\n"
        "  --fault-delay-ms MS, --fault-nan-every N, --fault-short-every N,\n"
        "  --corrupt RATE (serial: fraction of bytes sent corrupted)\n");
}

typedef struct {
    const char *driver;
    struct patctl_option *opts;
    int n_opts;
    int pinned_seed;       /* seed= given: client seeds are ignored */
    uint64_t seed;
    limit_policy limits;
    step_policy steps;
} serve_dev;

static int open_dev(serve_dev *s, device **d, uint64_t seed, char *err, size_t errlen)
{
    int rc = device_open(d, "served", s->driver, s->opts, s->n_opts, seed, err, errlen);
    if (rc == 0) {
        (*d)->limits = s->limits;
        (*d)->steps = s->steps;
        s->seed = seed;
    }
    return rc;
}

static int reopen(void *user, device **d, uint64_t seed, char *err, size_t errlen)
{
    serve_dev *s = user;
    if (seed == s->seed)
        return 0;
    device *nd = NULL;
    int rc = open_dev(s, &nd, seed, err, errlen);
    if (rc)
        return rc;
    device_close(d);
    *d = nd;
    fprintf(stderr, "patctl serve: device reopened with the client's seed %llu\n", (unsigned long long)seed);
    return 0;
}

static int parse_l(const char *s, long lo, long hi, long *out)
{
    char *e;
    long v = strtol(s, &e, 10);
    if (e == s || *e || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int cmd_serve(int argc, char **argv)
{
    const char *driver = NULL, *zmq = NULL, *serial = NULL, *keyfile = NULL, *allowfile = NULL;
    char options[4096] = "";
    long baud = 115200, mtu = 4096, seed = 0, max_req = 0;
    int have_seed = 0;
    serve_opts so;
    memset(&so, 0, sizeof(so));
    pt_link_opts lo;
    pt_link_opts_default(&lo);
    serve_dev sd;
    memset(&sd, 0, sizeof(sd));
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long l;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            serve_usage(stdout);
            return EXIT_OK;
        } else if (!strcmp(a, "--verbose")) {
            so.verbose = 1;
            continue;
        } else if (!strchr(a, '=') || a[0] == '-') {
            if (!v)
                goto bad;
            i++;
            if (!strcmp(a, "--device")) driver = v;
            else if (!strcmp(a, "--options")) {
                size_t u = strlen(options);
                snprintf(options + u, sizeof(options) - u, "%s%s", u ? "," : "", v);
            } else if (!strcmp(a, "--zmq")) zmq = v;
            else if (!strcmp(a, "--serial")) serial = v;
            else if (!strcmp(a, "--curve-key")) keyfile = v;
            else if (!strcmp(a, "--allow-keys")) allowfile = v;
            else if (!strcmp(a, "--baud")) { if (parse_l(v, 50, 100000000, &baud)) goto bad; }
            else if (!strcmp(a, "--mtu")) { if (parse_l(v, 16, 65535, &mtu)) goto bad; }
            else if (!strcmp(a, "--seed")) { if (parse_l(v, 0, 0x7fffffffL, &seed)) goto bad; have_seed = 1; }
            else if (!strcmp(a, "--max-requests")) { if (parse_l(v, 0, 0x7fffffffL, &max_req)) goto bad; }
            else if (!strcmp(a, "--limits")) {
                if (!strcmp(v, "clamp")) sd.limits = LIMIT_CLAMP;
                else if (!strcmp(v, "reject")) sd.limits = LIMIT_REJECT;
                else goto bad;
            } else if (!strcmp(a, "--steps")) {
                if (!strcmp(v, "ramp")) sd.steps = STEP_RAMP;
                else if (!strcmp(v, "refuse")) sd.steps = STEP_REFUSE;
                else goto bad;
            }
            else if (!strcmp(a, "--fault-die-after")) { if (parse_l(v, 1, 0x7fffffffL, &l)) goto bad; so.faults.die_after = l; }
            else if (!strcmp(a, "--fault-delay-every")) { if (parse_l(v, 1, 0x7fffffffL, &l)) goto bad; so.faults.delay_every = l; }
            else if (!strcmp(a, "--fault-delay-ms")) { if (parse_l(v, 1, 600000, &l)) goto bad; so.faults.delay_ms = (int)l; }
            else if (!strcmp(a, "--fault-nan-every")) { if (parse_l(v, 1, 0x7fffffffL, &l)) goto bad; so.faults.nan_every = l; }
            else if (!strcmp(a, "--fault-short-every")) { if (parse_l(v, 1, 0x7fffffffL, &l)) goto bad; so.faults.short_every = l; }
            else if (!strcmp(a, "--corrupt")) {
                char *e;
                lo.corrupt_rate = strtod(v, &e);
                if (e == v || *e || !(lo.corrupt_rate >= 0 && lo.corrupt_rate < 1)) goto bad;
            } else {
                fprintf(stderr, "patctl serve: unknown option '%s' (see patctl serve --help)\n", a);
                return EXIT_USAGE;
            }
            continue;
        } else {
            size_t u = strlen(options); /* a bare driver option k=v */
            snprintf(options + u, sizeof(options) - u, "%s%s", u ? "," : "", a);
            continue;
        }
    bad:
        fprintf(stderr, "patctl serve: bad or missing value for %s (see patctl serve --help)\n", a);
        return EXIT_USAGE;
    }
    if (!driver || (!zmq == !serial)) {
        fprintf(stderr, "patctl serve: needs --device and exactly one of --zmq or --serial (see --help)\n");
        return EXIT_USAGE;
    }
    if (allowfile && (!keyfile || serial)) {
        fprintf(stderr, "patctl serve: --allow-keys %s needs --curve-key FILE and --zmq (it lists the "
                "CURVE clients allowed)\n", allowfile);
        return EXIT_USAGE;
    }
    if (allowfile && strlen(allowfile) >= sizeof(lo.curve_allow_file)) {
        fprintf(stderr, "patctl serve: --allow-keys: path too long\n");
        return EXIT_USAGE;
    }
    if (allowfile)
        snprintf(lo.curve_allow_file, sizeof(lo.curve_allow_file), "%s", allowfile);
    char err[1024] = "";
    sd.driver = driver;
    sd.n_opts = options_parse(options, &sd.opts);
    if (sd.n_opts < 0) {
        fprintf(stderr, "patctl serve: driver options must be key=value pairs, got '%s'\n", options);
        return EXIT_USAGE;
    }
    sd.pinned_seed = options_get(sd.opts, sd.n_opts, "seed") != NULL || have_seed;
    if (keyfile && pt_curve_read(keyfile, lo.curve_public, lo.curve_secret, err, sizeof(err))) {
        fprintf(stderr, "patctl serve: %s\n", err);
        free(sd.opts);
        return EXIT_FAIL;
    }
    lo.baud = (int)baud;
    lo.mtu = (uint32_t)mtu;
    char addr[300];
    if (serial)
        snprintf(addr, sizeof(addr), "serial:%s", serial);
    else
        snprintf(addr, sizeof(addr), "%s", zmq);

    device *d = NULL;
    pt_server *srv = NULL;
    int rc = open_dev(&sd, &d, (uint64_t)seed, err, sizeof(err));
    if (!rc)
        rc = pt_server_open(&srv, addr, &lo, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "patctl serve: %s\n", err);
        device_close(&d);
        free(sd.opts);
        return EXIT_FAIL;
    }
    so.driver = driver;
    so.mtu = serial ? (uint32_t)mtu : 0;
    if ((d->drv->flags & PATCTL_DRV_SEEDED) && !sd.pinned_seed) {
        so.reopen = reopen;
        so.reopen_user = &sd;
    }
    printf("patctl serve: device %s (%s: %d inputs, %d outputs, %ld parameters) on %s%s\n", driver,
           d->desc.model, d->desc.n_in, d->desc.n_out, d->n_theta, pt_server_address(srv),
           allowfile ? " (CURVE, clients in the allowlist only)" : keyfile ? " (CURVE)" : "");
    printf("patctl serve: ready on %s\n", pt_server_address(srv));
    fflush(stdout);
    serve_stats st;
    rc = remote_serve(&d, srv, &so, &patctl_stop, max_req, &st);
    const pt_link_stats *ls = pt_server_stats(srv);
    printf("patctl serve: stopped after %llu requests (%llu runs, %llu errors); %llu bytes in, %llu out\n",
           (unsigned long long)st.requests, (unsigned long long)st.runs, (unsigned long long)st.errors,
           (unsigned long long)ls->bytes_in, (unsigned long long)ls->bytes_out);
    pt_server_close(&srv);
    device_close(&d);
    free(sd.opts);
    if (rc) {
        fprintf(stderr, "patctl serve: %s\n", patctl_strerror(rc));
        return EXIT_FAIL;
    }
    return EXIT_OK;
}
