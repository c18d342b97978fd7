/* summary.json of a run directory (written with cJSON). */
#ifndef PATCTL_SUMMARY_H
#define PATCTL_SUMMARY_H

#include "controller/config.h"
#include "controller/train.h"

/* Create dir (and parents) if needed. */
int make_dirs(const char *dir);
/* Write <dir>/summary.json atomically (temp file + rename). status is
 * "success", "abort" or "fail". */
int summary_write(const char *dir, const run_config *c, const train_result *r,
                  const char *status, const char *reason);

#endif
