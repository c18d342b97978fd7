/* Command-line helpers shared by the patctl subcommands. */
#ifndef PATCTL_CLI_ARGS_H
#define PATCTL_CLI_ARGS_H

/* "--key value" or "--key=value" at argv[*i]: the value (advancing *i past
 * a separate value), or NULL when argv[*i] is not that option. */
const char *cli_opt_value(int argc, char **argv, int *i, const char *key);

/* s as a number in [lo, hi]: 0, or -1 when it is not one or out of range. */
int cli_num(const char *s, double lo, double hi, double *out);

#endif
