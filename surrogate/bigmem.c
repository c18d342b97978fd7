#define _GNU_SOURCE
#include "surrogate/bigmem.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

enum { HUGE_ALIGN = 2 << 20, HUGE_MIN = 4 << 20 };

void *big_alloc(size_t bytes)
{
    if (bytes < HUGE_MIN)
        return malloc(bytes ? bytes : 1);
    void *p = NULL;
    if (posix_memalign(&p, HUGE_ALIGN, bytes) != 0)
        return NULL;
#ifdef MADV_HUGEPAGE
    (void)madvise(p, bytes, MADV_HUGEPAGE); /* advice only: may be declined */
#endif
    return p;
}

void *big_calloc(size_t count, size_t size)
{
    if (size && count > SIZE_MAX / size)
        return NULL;
    void *p = big_alloc(count * size);
    if (p)
        memset(p, 0, count * size);
    return p;
}
