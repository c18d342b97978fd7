/* pt_crc32 for the device-side library: CRC-32 (IEEE 802.3, reflected,
 * polynomial 0xEDB88320, init and xorout 0xFFFFFFFF), bitwise, no table, so
 * it costs no RAM and ~100 bytes of flash.  The host uses zlib's crc32(),
 * which is the same function; tests/test_protocols.c checks they agree.
 * Portable C99. */
#include "protocols/frame.h"

/* Tests build this file a second time with PT_CRC32_NAME renamed to compare
 * it with zlib in one binary. */
#ifndef PT_CRC32_NAME
#define PT_CRC32_NAME pt_crc32
#endif

uint32_t PT_CRC32_NAME(uint32_t crc, const uint8_t *p, size_t n);
uint32_t PT_CRC32_NAME(uint32_t crc, const uint8_t *p, size_t n)
{
    crc = ~crc;
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}
