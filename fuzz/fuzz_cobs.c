/* libFuzzer target: COBS decoding (whole-buffer and streaming) of arbitrary
 * bytes, and the encode/decode round trip of arbitrary data. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/cobs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t out[70000], enc[70000 + 70000 / 254 + 2], sbuf[512];
    if (size > 65536)
        return 0;
    size_t n;
    /* arbitrary input to the decoders */
    if (cobs_decode(out, sizeof(out), data, size, &n) == 0 && n > size)
        abort();
    cobs_rx rx;
    cobs_rx_init(&rx, sbuf, sizeof(sbuf));
    for (size_t i = 0; i < size; i++)
        if (cobs_rx_byte(&rx, data[i]) && rx.len > sizeof(sbuf))
            abort();
    /* round trip */
    size_t m = cobs_encode(enc, data, size);
    if (m > COBS_MAX_ENCODED(size) || memchr(enc, 0, m))
        abort();
    if (cobs_decode(out, sizeof(out), enc, m, &n) || n != size || (size && memcmp(out, data, size)))
        abort();
    return 0;
}
