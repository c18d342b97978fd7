#include "surrogate/surrogate.h"

#include <stdlib.h>

void surrogate_destroy(surrogate **sp)
{
    if (!sp || !*sp)
        return;
    (*sp)->ops->destroy(*sp);
    *sp = NULL;
}
