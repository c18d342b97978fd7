/* Progress of long work: on a terminal a redrawn bar (steps/s, loss,
 * running accuracy, device share of time, ETA); elsewhere one line per
 * epoch.  Output goes to stderr (bar) or stdout (lines). */
#ifndef PATCTL_PROGRESS_H
#define PATCTL_PROGRESS_H

#include <stdio.h>

typedef struct progress {
    int tty;              /* redraw a bar */
    int quiet;            /* print nothing */
    FILE *out;
    double t0, t_epoch0, last_draw;
    long total, done;     /* steps of the whole job */
    long done0;           /* steps done before this session (resume) */
    int epoch, epochs;
    long epoch_steps;     /* steps in this epoch so far */
    double loss_sum;      /* this epoch */
    long hits, seen;      /* this epoch */
    double dev_s, all_s;  /* device seconds and all seconds of this epoch */
} progress;

double now_seconds(void);
void progress_begin(progress *p, long total_steps, int epochs, int tty, int quiet);
/* A resumed job: `done` steps were done by earlier sessions. */
void progress_resume(progress *p, long done);
void progress_epoch_begin(progress *p, int epoch);
/* Continue an epoch in progress with its accumulators (resume). */
void progress_epoch_restore(progress *p, long steps, double loss_sum, long hits, long seen,
                            double dev_s, double all_s);
/* One training step: loss, hits of batch size B, seconds spent in devices
 * and in total during the step. */
void progress_step(progress *p, double loss, int hits, int B, double dev_s, double step_s);
/* End of an epoch: prints one line (always, also on a terminal). */
void progress_epoch_end(progress *p);
/* Free-form status line (evaluation etc.). */
void progress_note(progress *p, const char *fmt, ...);

#endif
