#include "surrogate/surrogate.h"

#include <stdlib.h>

atomic_long surrogate_backward_calls;

void surrogate_destroy(surrogate **sp)
{
    if (!sp || !*sp)
        return;
    (*sp)->ops->destroy(*sp);
    *sp = NULL;
}
