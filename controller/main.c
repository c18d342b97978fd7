/* patctl — physics-aware training controller: the command-line entry. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <gsl/gsl_errno.h>

#include "controller/commands.h"

volatile sig_atomic_t patctl_stop = 0;

static void on_signal(int sig)
{
    (void)sig;
    patctl_stop = 1;
}

/* One row per subcommand; keep sorted as shown in --help. */
static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *about;
} commands[] = {
    {"train", cmd_train, "train a model (the default: the built-in quickstart); --resume RUN continues one"},
    {"eval", cmd_eval, "evaluate a run's checkpoint on the device: accuracy and confusion matrix"},
    {"export", cmd_export, "write a run's data as .npy or .csv files"},
    {"report", cmd_report, "figures and report.html of a run, or of runs compared"},
    {"collect", cmd_collect, "measure a device over random inputs and settings (data for fit)"},
    {"fit", cmd_fit, "fit and validate surrogates (grey-box, MLP) on collected data"},
    {"devices", cmd_devices, "list device drivers with parameters and limits, and serial ports"},
    {"serve", cmd_serve, "serve a device to remote controllers over ZeroMQ or a serial line"},
    {"keygen", cmd_keygen, "write a CURVE key pair for serve and remote devices"},
    {"version", cmd_version, "print version and the bound BLAS library"},
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: patctl [COMMAND] [OPTIONS]\n"
            "\n"
            "Trains physical neural networks with physics-aware training (PAT).\n"
            "\n"
            "commands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].about);
    fprintf(f, "\n`patctl COMMAND --help` describes a command's options.\n");
}

int main(int argc, char **argv)
{
    gsl_set_error_handler_off(); /* library errors are return codes, never abort() */
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    if (argc < 2)
        return cmd_train(argc, argv);
    const char *c = argv[1];
    if (strcmp(c, "--help") == 0 || strcmp(c, "-h") == 0 || strcmp(c, "help") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    if (strcmp(c, "--version") == 0)
        return cmd_version(argc - 1, argv + 1);
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(c, commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    if (c[0] == '-')  /* options of the default command */
        return cmd_train(argc, argv);
    fprintf(stderr, "patctl: unknown command '%s'\n\n", c);
    usage(stderr);
    return EXIT_USAGE;
}
