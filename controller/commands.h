/* The patctl subcommands; each returns a process exit status. */
#ifndef PATCTL_COMMANDS_H
#define PATCTL_COMMANDS_H

#include <signal.h>

int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_devices(int argc, char **argv);
int cmd_version(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_keygen(int argc, char **argv);
int cmd_collect(int argc, char **argv);
int cmd_fit(int argc, char **argv);

/* Set by SIGINT/SIGTERM once handlers are installed by main(). */
extern volatile sig_atomic_t patctl_stop;

/* Exit statuses. */
enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2, EXIT_INTERRUPTED = 130 };

#endif
