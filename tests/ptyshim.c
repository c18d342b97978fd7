/* Test-only workaround (DESIGN.md, "Facts"): libserialport's sp_open() fails
 * on a pseudo-terminal because the modem-line ioctls (TIOCMGET, TIOCMSET,
 * TIOCMBIS, TIOCMBIC) are not supported there.  This ioctl() wraps the real
 * one and makes those succeed on a pty (reporting DTR, RTS, CTS, DSR up).
 * Linked into the test binaries that open ptys, and built as
 * libpatctl_ptyshim.so to LD_PRELOAD into `patctl serve --serial` / `patctl
 * train` for pty demos.  Never part of patctl itself: a real serial port
 * needs none of this. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdarg.h>
#include <sys/ioctl.h>

int ioctl(int fd, unsigned long req, ...);
int ioctl(int fd, unsigned long req, ...)
{
    va_list ap;
    va_start(ap, req);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    static int (*real)(int, unsigned long, ...);
    if (!real) {
        void *sym = dlsym(RTLD_NEXT, "ioctl");
        *(void **)(&real) = sym;
    }
    int rc = real(fd, req, arg);
    if (rc < 0 && (req == TIOCMGET || req == TIOCMSET || req == TIOCMBIS || req == TIOCMBIC)) {
        if (req == TIOCMGET && arg)
            *(int *)arg = TIOCM_DTR | TIOCM_RTS | TIOCM_CTS | TIOCM_DSR;
        return 0;
    }
    return rc;
}
