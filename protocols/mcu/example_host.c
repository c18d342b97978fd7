/* A device-side program for the host: the microcontroller library driving a
 * small "analog layer" y = tanh(W x + b) (n_in 4, n_out 3, W [3 x 4] and
 * b [3] in volts) on a tty, e.g. one end of a pty pair:
 *
 *   socat pty,raw,echo=0,link=/tmp/ctl pty,raw,echo=0,link=/tmp/dev &
 *   build/patctl_mcu_example /tmp/dev &
 *   (controller: driver = remote, endpoint = serial:/dev/../../../tmp/ctl)
 *
 * On a real microcontroller, uart_read/uart_write wrap the UART registers and
 * the loop is the firmware's main loop; nothing else changes. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <termios.h>
#include <unistd.h>

#include "protocols/mcu/patctl_mcu.h"
#include "protocols/mcu/example_device.h"

static int fd = -1;

static int uart_read(void *user)
{
    (void)user;
    uint8_t b;
    ssize_t n = read(fd, &b, 1);
    return n == 1 ? b : -1;
}

static int uart_write(void *user, const uint8_t *p, size_t n)
{
    (void)user;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                usleep(100);
                continue;
            }
            return -3;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s TTY\n", argv[0]);
        return 2;
    }
    fd = open(argv[1], O_RDWR | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        perror(argv[1]);
        return 1;
    }
    struct termios t;
    if (tcgetattr(fd, &t) == 0) {
        cfmakeraw(&t);
        tcsetattr(fd, TCSANOW, &t);
    }
    pmcu dev;
    if (example_device_init(&dev, uart_read, uart_write, NULL)) {
        fprintf(stderr, "example device: bad buffers\n");
        return 1;
    }
    fprintf(stderr, "example device on %s: ready\n", argv[1]);
    for (;;) {
        int rc = pmcu_poll(&dev, 0);
        if (rc < 0) {
            fprintf(stderr, "example device: UART write failed\n");
            return 1;
        }
        if (rc == 0)
            usleep(200);
    }
}
