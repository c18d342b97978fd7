/* patctl keygen: a CURVE key pair for `patctl serve --curve-key` and the
 * remote driver's server_key= / client_key= options. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "controller/commands.h"
#include "protocols/link.h"

static int write_file(const char *path, const char *text, mode_t mode, int force)
{
    int fd = open(path, O_WRONLY | O_CREAT | (force ? O_TRUNC : O_EXCL), mode);
    if (fd < 0)
        return -1;
    size_t n = strlen(text);
    int ok = write(fd, text, n) == (ssize_t)n;
    if (fchmod(fd, mode))
        ok = 0;
    return close(fd) == 0 && ok ? 0 : -1;
}

int cmd_keygen(int argc, char **argv)
{
    const char *prefix = "patctl";
    int force = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: patctl keygen [--out PREFIX] [--force]\n"
                   "Writes a CURVE key pair: PREFIX.key (public + secret, mode 0600; for\n"
                   "`patctl serve --curve-key` or the remote option client_key=) and PREFIX.pub\n"
                   "(public only; give it to clients as server_key=PREFIX.pub, or a client's to a\n"
                   "server's --allow-keys list).  Default PREFIX: patctl.  Existing files are kept\n"
                   "unless --force.\n");
            return EXIT_OK;
        } else if (!strcmp(argv[i], "--out") && i + 1 < argc) {
            prefix = argv[++i];
        } else if (!strcmp(argv[i], "--force")) {
            force = 1;
        } else {
            fprintf(stderr, "patctl keygen: unknown option '%s' (see --help)\n", argv[i]);
            return EXIT_USAGE;
        }
    }
    char pub[41], sec[41];
    if (pt_curve_keypair(pub, sec)) {
        fprintf(stderr, "patctl keygen: this libzmq has no CURVE support\n");
        return EXIT_FAIL;
    }
    char kpath[1024], ppath[1024], text[256];
    snprintf(kpath, sizeof(kpath), "%s.key", prefix);
    snprintf(ppath, sizeof(ppath), "%s.pub", prefix);
    snprintf(text, sizeof(text), "# patctl CURVE key pair: keep secret\npublic = %s\nsecret = %s\n", pub, sec);
    if (write_file(kpath, text, 0600, force)) {
        fprintf(stderr, "patctl keygen: cannot write %s: %s\n", kpath, strerror(errno));
        return EXIT_FAIL;
    }
    snprintf(text, sizeof(text), "# patctl CURVE public key\npublic = %s\n", pub);
    if (write_file(ppath, text, 0644, force)) {
        fprintf(stderr, "patctl keygen: cannot write %s: %s\n", ppath, strerror(errno));
        return EXIT_FAIL;
    }
    printf("wrote %s (secret, 0600) and %s (public %s)\n", kpath, ppath, pub);
    return EXIT_OK;
}
