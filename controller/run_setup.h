/* What the commands that work on a run share: loading the data a config
 * names, locking a run directory, opening a run's config from its store. */
#ifndef PATCTL_RUN_SETUP_H
#define PATCTL_RUN_SETUP_H

#include <stddef.h>

#include "controller/config.h"
#include "controller/data.h"
#include "controller/runstore.h"

/* The training and test sets of c ([data] set/path/pool/limits); train may
 * be NULL (evaluation only).  Synthetic data is seeded from c->seed. */
int run_load_data(const run_config *c, dataset *train, dataset *test, char *err, size_t errlen);

/* Take an exclusive lock on the run directory (a second patctl on the same
 * run fails instead of corrupting it).  Returns a descriptor to keep open
 * (closing it releases the lock), or -1 with a message. */
int run_lock(const char *dir, char *err, size_t errlen);

/* The run's effective config, parsed back from its start record. */
int run_config_from_store(runstore *rs, const char *dir, run_config *c, char *err, size_t errlen);

/* argv joined with blanks (caller frees). */
char *run_argv_text(int argc, char **argv);

#endif
