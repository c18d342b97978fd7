/* pt_crc32 on the host: zlib's crc32() (the same CRC as protocols/mcu/crc32.c). */
#include <zlib.h>

#include "protocols/frame.h"

uint32_t pt_crc32(uint32_t crc, const uint8_t *p, size_t n)
{
    /* zlib takes uInt lengths: feed large buffers in pieces */
    uLong c = crc;
    while (n > 0) {
        uInt k = n > 0x40000000u ? 0x40000000u : (uInt)n;
        c = crc32(c, p, k);
        p += k;
        n -= k;
    }
    return (uint32_t)c;
}
