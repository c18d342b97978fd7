/* patctl report: gnuplot as a child process (fork/exec, script file with its
 * data inline, stderr captured), and the bookkeeping of figures. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "controller/report_int.h"
#include "patctl/error.h"

#define INSTALL_HINT "install it with: sudo apt-get install gnuplot-nox (or scripts/deps.sh --test)"

/* Run prog with args in dir (NULL = here), stdin from /dev/null, stdout
 * discarded, stderr (first msglen-1 bytes) into msg.  Returns the exit
 * status, 127 when prog could not be executed, -1 on a fork/pipe failure. */
static int run_child(const char *prog, char *const args[], const char *dir, char *msg, size_t msglen)
{
    int fds[2];
    if (msglen)
        msg[0] = '\0';
    if (pipe(fds) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]), close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
        }
        dup2(fds[1], 2);
        close(fds[0]);
        if (dir && chdir(dir) != 0)
            _exit(126);
        execvp(prog, args);
        _exit(127);
    }
    close(fds[1]);
    size_t got = 0;
    char buf[4096];
    ssize_t k;
    while ((k = read(fds[0], buf, sizeof(buf))) != 0) {
        if (k < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        for (ssize_t i = 0; i < k && got + 1 < msglen; i++)
            msg[got++] = buf[i];
    }
    if (msglen)
        msg[got] = '\0';
    close(fds[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

void gp_init(gnuplot *g, const char *prog)
{
    memset(g, 0, sizeof(*g));
    const char *env = getenv("PATCTL_GNUPLOT");
    const char *from = prog ? "--gnuplot" : env ? "PATCTL_GNUPLOT" : NULL;
    if (!prog)
        prog = env ? env : "gnuplot";
    snprintf(g->prog, sizeof(g->prog), "%s", prog);
    if (!prog[0]) {
        snprintf(g->why, sizeof(g->why), "gnuplot disabled (%s is empty): figures are not drawn, only their "
                 "scripts (NAME.gp); to draw them %s", from ? from : "PATCTL_GNUPLOT", INSTALL_HINT);
        return;
    }
    char msg[512];
    char *args[] = {g->prog, "-e", "set terminal pngcairo", NULL};
    int st = run_child(g->prog, args, NULL, msg, sizeof(msg));
    if (st == 127 || st < 0) {
        snprintf(g->why, sizeof(g->why), "gnuplot not found ('%.200s'%s%s): figures are not drawn, only their "
                 "scripts (NAME.gp); %s", g->prog, from ? " from " : "", from ? from : "", INSTALL_HINT);
        return;
    }
    if (st != 0) {
        char *nl = strchr(msg, '\n');
        while (nl && nl == msg) /* skip leading blank lines */
            memmove(msg, msg + 1, strlen(msg)), nl = strchr(msg, '\n');
        snprintf(g->why, sizeof(g->why), "'%.150s' cannot draw PNG with the pngcairo terminal (%.150s): figures are "
                 "not drawn; %s", g->prog, msg[0] ? msg : "no message", INSTALL_HINT);
        return;
    }
    g->ok = 1;
}

int gp_run(const gnuplot *g, const char *dir, const char *script, char *msg, size_t msglen)
{
    char prog[512];
    snprintf(prog, sizeof(prog), "%s", g->prog);
    char scr[1024];
    snprintf(scr, sizeof(scr), "%s", script);
    char *args[] = {prog, scr, NULL};
    int st = run_child(prog, args, dir, msg, msglen);
    if (st == 0)
        return 0;
    if (msglen && !msg[0])
        snprintf(msg, msglen, "gnuplot exited with status %d", st);
    return PATCTL_ERR_IO;
}

int png_file_ok(const char *path, long min_bytes)
{
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    unsigned char b[8];
    int ok = fread(b, 1, 8, f) == 8 && memcmp(b, sig, 8) == 0;
    ok = ok && fseek(f, 0, SEEK_END) == 0 && ftell(f) >= min_bytes;
    fclose(f);
    return ok;
}

/* ---- figures ---- */

static report_figure *add_fig(rep_ctx *c, const char *name, const char *title)
{
    report_result *res = c->res;
    if (res->n_figs >= REPORT_MAX_FIGS)
        return NULL;
    report_figure *m = &res->figs[res->n_figs++];
    memset(m, 0, sizeof(*m));
    snprintf(m->name, sizeof(m->name), "%s", name);
    snprintf(m->title, sizeof(m->title), "%s", title);
    return m;
}

void fig_note(report_figure *m, const char *fmt, ...)
{
    size_t used = strlen(m->note);
    if (used && used + 2 < sizeof(m->note)) {
        strcat(m->note, "; ");
        used += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->note + used, sizeof(m->note) - used, fmt, ap);
    va_end(ap);
}

void fig_missing(rep_ctx *c, const char *name, const char *title, const char *fmt, ...)
{
    report_figure *m = add_fig(c, name, title);
    if (!m)
        return;
    m->status = FIG_MISSING;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->note, sizeof(m->note), fmt, ap);
    va_end(ap);
}

rep_fig *fig_begin(rep_ctx *c, rep_fig *fg, const char *name, const char *title, int w, int h)
{
    memset(fg, 0, sizeof(*fg));
    if (!(fg->meta = add_fig(c, name, title)))
        return NULL;
    fg->f = open_memstream(&fg->buf, &fg->len);
    if (!fg->f) {
        c->res->n_figs--;
        return NULL;
    }
    char t[400];
    fprintf(fg->f,
            "# patctl report: %s\n"
            "# redraw: gnuplot %s.gp (in this directory); the data is inline below.\n"
            "set terminal pngcairo size %d,%d noenhanced font 'DejaVu Sans,11' linewidth 1.2\n"
            "set output '%s.png'\n"
            "set encoding utf8\n"
            "set grid lc rgb '#dddddd' lw 0.8\n"
            "set key opaque box lc rgb '#bbbbbb'\n",
            gp_str(t, sizeof(t), title), name, w, h, name);
    return fg;
}

int fig_end(rep_ctx *c, rep_fig *fg)
{
    report_figure *m = fg->meta;
    fprintf(fg->f, "unset output\n");
    if (fclose(fg->f) != 0 || !fg->buf) {
        free(fg->buf);
        m->status = FIG_FAILED;
        fig_note(m, "out of memory writing the script");
        return PATCTL_ERR_NOMEM;
    }
    char path[1200];
    snprintf(path, sizeof(path), "%s/%s.gp", c->dir, m->name);
    FILE *f = fopen(path, "w");
    size_t wrote = f ? fwrite(fg->buf, 1, fg->len, f) : 0;
    int bad = !f || wrote != fg->len;
    if (f && fclose(f) != 0)
        bad = 1;
    free(fg->buf);
    fg->buf = NULL;
    if (bad) {
        m->status = FIG_FAILED;
        fig_note(m, "cannot write %s: %s", path, strerror(errno));
        return PATCTL_ERR_IO;
    }
    snprintf(path, sizeof(path), "%s/%s.png", c->dir, m->name);
    unlink(path); /* never report a stale picture */
    if (!c->gp->ok) {
        m->status = FIG_NO_GNUPLOT;
        return 0;
    }
    char script[128], msg[1024];
    snprintf(script, sizeof(script), "%s.gp", m->name);
    if (gp_run(c->gp, c->dir, script, msg, sizeof(msg)) != 0 || !png_file_ok(path, 1000)) {
        m->status = FIG_FAILED;
        unlink(path); /* a half-drawn picture would mislead */
        /* gnuplot's warnings come first; keep the message short */
        for (char *p = msg; *p; p++)
            if (*p == '\n')
                *p = ' ';
        fig_note(m, "gnuplot failed on %s.gp: %.600s", m->name, msg[0] ? msg : "no PNG written");
        return PATCTL_ERR_IO;
    }
    m->status = FIG_DRAWN;
    return 0;
}

const char *gp_str(char *buf, size_t n, const char *text)
{
    /* units read better with superscripts: the terminal is noenhanced, so
     * write them as UTF-8 */
    static const char *const sup[][2] = {{"^-1", "\u207b\u00b9"}, {"^-2", "\u207b\u00b2"}, {"^2", "\u00b2"},
                                         {"^3", "\u00b3"}};
    size_t k = 0;
    if (n < 3) {
        if (n)
            buf[0] = '\0';
        return buf;
    }
    buf[k++] = '"';
    for (const char *p = text; *p && k + 8 < n; p++) {
        size_t j, nsup = sizeof(sup) / sizeof(sup[0]);
        for (j = 0; j < nsup; j++)
            if (strncmp(p, sup[j][0], strlen(sup[j][0])) == 0)
                break;
        if (j < nsup) {
            size_t l = strlen(sup[j][1]);
            memcpy(buf + k, sup[j][1], l);
            k += l;
            p += strlen(sup[j][0]) - 1;
            continue;
        }
        if (*p == '\r')
            continue;
        if (*p == '"' || *p == '\\' || *p == '\n') {
            buf[k++] = '\\';
            buf[k++] = *p == '\n' ? 'n' : *p;
            continue;
        }
        buf[k++] = *p;
    }
    buf[k++] = '"';
    buf[k] = '\0';
    return buf;
}

const char *gp_color(int i)
{
    /* colour-blind-safe qualitative palette (Okabe-Ito, then Tableau) */
    static const char *const pal[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00",
                                      "#56B4E9", "#000000", "#8C564B", "#7F7F7F", "#BCBD22"};
    return pal[(i < 0 ? -i : i) % 10];
}

double gp_time_unit(double span_s, const char **unit)
{
    if (!(span_s < 600)) {
        if (span_s < 6 * 3600) {
            *unit = "min";
            return 60;
        }
        *unit = "h";
        return 3600;
    }
    *unit = "s";
    return 1;
}

void gp_num(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, "%.7g", v);
    else
        fputs("NaN", f);
}

const char *report_status_name(fig_status s)
{
    switch (s) {
    case FIG_DRAWN: return "drawn";
    case FIG_MISSING: return "missing";
    case FIG_NO_GNUPLOT: return "not drawn (no gnuplot)";
    default: return "failed";
    }
}
