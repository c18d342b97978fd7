/* A relayed pty pair for serial tests (see ptypair.h). */
#define _GNU_SOURCE
#include "ptypair.h"

#include <errno.h>
#include <poll.h>
#include <pty.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

static double urand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (double)(*s >> 11) * (1.0 / 9007199254740992.0);
}

static void copy(ptypair *p, int from, int to)
{
    uint8_t buf[4096];
    ssize_t n = read(from, buf, sizeof(buf));
    if (n <= 0)
        return;
    for (ssize_t i = 0; i < n; i++)
        if (p->corrupt > 0 && urand(&p->rng) < p->corrupt) {
            buf[i] ^= (uint8_t)(1 + (int)(urand(&p->rng) * 255));
            p->corrupted++;
        }
    p->relayed += (uint64_t)n;
    ssize_t off = 0;
    while (off < n) {
        ssize_t w = write(to, buf + off, (size_t)(n - off));
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                usleep(100);
                continue;
            }
            return;
        }
        off += w;
    }
}

static void *relay_main(void *arg)
{
    ptypair *p = arg;
    struct pollfd fds[2] = {{p->ma, POLLIN, 0}, {p->mb, POLLIN, 0}};
    while (!p->stop) {
        int n = poll(fds, 2, 50);
        if (n <= 0)
            continue;
        if (fds[0].revents & POLLIN)
            copy(p, p->ma, p->mb);
        if (fds[1].revents & POLLIN)
            copy(p, p->mb, p->ma);
        if ((fds[0].revents | fds[1].revents) & (POLLERR | POLLNVAL))
            usleep(1000);
    }
    return NULL;
}

static int one(int *m, int *s, char *link, size_t linklen, char *port, size_t portlen, const char *tag)
{
    char name[64];
    if (openpty(m, s, name, NULL, NULL))
        return -1;
    struct termios t;
    if (tcgetattr(*s, &t) == 0) {
        cfmakeraw(&t);
        tcsetattr(*s, TCSANOW, &t);
    }
    snprintf(link, linklen, "/tmp/patctl-pty-%d-%s-%d", (int)getpid(), tag, *m);
    unlink(link);
    if (symlink(name, link))
        return -1;
    /* libserialport looks the port up under /sys/class/tty/<name after /dev/>:
     * "/dev/../../.." + the symlink's absolute path reaches the symlink */
    snprintf(port, portlen, "/dev/../../..%s", link);
    return 0;
}

int ptypair_open(ptypair *p, double corrupt, uint64_t seed)
{
    memset(p, 0, sizeof(*p));
    p->corrupt = corrupt;
    p->rng = seed * 0x9E3779B97F4A7C15ull + 1;
    if (one(&p->ma, &p->sa, p->link_a, sizeof(p->link_a), p->port_a, sizeof(p->port_a), "a") ||
        one(&p->mb, &p->sb, p->link_b, sizeof(p->link_b), p->port_b, sizeof(p->port_b), "b"))
        return -1;
    if (pthread_create(&p->relay, NULL, relay_main, p))
        return -1;
    return 0;
}

void ptypair_close(ptypair *p)
{
    p->stop = 1;
    pthread_join(p->relay, NULL);
    unlink(p->link_a);
    unlink(p->link_b);
    close(p->ma);
    close(p->mb);
    close(p->sa);
    close(p->sb);
}
