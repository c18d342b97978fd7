#include "controller/progress.h"

#include <stdarg.h>
#include <string.h>
#include <time.h>

double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void progress_begin(progress *p, long total_steps, int epochs, int tty, int quiet)
{
    memset(p, 0, sizeof(*p));
    p->tty = tty && !quiet;
    p->quiet = quiet;
    p->out = stdout;
    p->total = total_steps;
    p->epochs = epochs;
    p->t0 = now_seconds();
}

void progress_resume(progress *p, long done)
{
    p->done = p->done0 = done;
}

void progress_epoch_restore(progress *p, long steps, double loss_sum, long hits, long seen,
                            double dev_s, double all_s)
{
    p->epoch_steps = steps;
    p->loss_sum = loss_sum;
    p->hits = hits, p->seen = seen;
    p->dev_s = dev_s, p->all_s = all_s;
}

void progress_epoch_begin(progress *p, int epoch)
{
    p->epoch = epoch;
    p->epoch_steps = 0;
    p->loss_sum = 0;
    p->hits = p->seen = 0;
    p->dev_s = p->all_s = 0;
    p->t_epoch0 = now_seconds();
}

static void fmt_time(char *buf, size_t n, double s)
{
    if (s < 0 || s > 1e7)
        snprintf(buf, n, "--:--");
    else if (s >= 3600)
        snprintf(buf, n, "%d:%02d:%02d", (int)(s / 3600), (int)(s / 60) % 60, (int)s % 60);
    else
        snprintf(buf, n, "%d:%02d", (int)(s / 60), (int)s % 60);
}

void progress_step(progress *p, double loss, int hits, int B, double dev_s, double step_s)
{
    p->done++;
    p->epoch_steps++;
    p->loss_sum += loss;
    p->hits += hits;
    p->seen += B;
    p->dev_s += dev_s;
    p->all_s += step_s;
    if (!p->tty)
        return;
    double t = now_seconds();
    if (t - p->last_draw < 0.1 && p->done != p->total)
        return;
    p->last_draw = t;
    double el = t - p->t0, rate = (p->done - p->done0) / (el > 0 ? el : 1e-9);
    char eta[16];
    fmt_time(eta, sizeof(eta), (p->total - p->done) / (rate > 0 ? rate : 1e-9));
    int width = 24, fill = p->total ? (int)(width * p->done / p->total) : 0;
    char bar[32];
    for (int i = 0; i < width; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[width] = '\0';
    fprintf(stderr, "\r[epoch %d/%d] %s %ld/%ld  %.1f steps/s  loss %.4f  acc %.1f%%  device %.0f%%  ETA %s ",
            p->epoch, p->epochs, bar, p->done, p->total, rate, p->loss_sum / (p->epoch_steps ? p->epoch_steps : 1),
            100.0 * p->hits / (p->seen ? p->seen : 1), 100.0 * p->dev_s / (p->all_s > 0 ? p->all_s : 1),
            eta);
    fflush(stderr);
}

void progress_epoch_end(progress *p)
{
    if (p->quiet)
        return;
    if (p->tty)
        fprintf(stderr, "\r%*s\r", 120, "");
    double el = now_seconds() - p->t_epoch0;
    fprintf(p->out, "epoch %d/%d: loss %.4f  train acc %.2f%%  %ld steps in %.1f s (%.1f steps/s, device %.0f%%)\n",
            p->epoch, p->epochs, p->loss_sum / (p->epoch_steps ? p->epoch_steps : 1),
            100.0 * p->hits / (p->seen ? p->seen : 1), p->epoch_steps, el,
            p->epoch_steps / (el > 0 ? el : 1e-9), 100.0 * p->dev_s / (p->all_s > 0 ? p->all_s : 1));
    fflush(p->out);
}

void progress_note(progress *p, const char *fmt, ...)
{
    if (p->quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(p->out, fmt, ap);
    va_end(ap);
    fflush(p->out);
}
