/* train/metrics: the metrics of a log interval (DESIGN.md §3 step 6): reduced across ranks (loss,
 * loss by timestep quartile, grad norm, images/s, allreduce wait), printed as one line by rank 0
 * and appended to RUN_DIR/metrics.csv (columns: METRICS_HEADER below, listed in README.md), which a
 * resumed run first trims to its checkpoint's step. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "train_internal.h"

/* metrics.csv's columns, in the order of the log line; README.md (Usage, Training) lists the same
 * names with their units and is the one place the rest of the documentation refers to. val_loss
 * stays last: it is the one column empty on most rows (only checkpoint steps with --val-data). */
static const char METRICS_HEADER[] =
    "step,epoch,loss,loss_q1,loss_q2,loss_q3,loss_q4,lr,grad_norm,images_per_s,allreduce_wait,"
    "elapsed_s,eta_s,val_loss\n";
/* The layout written before allreduce_wait and eta_s were added (issue 16). */
static const char METRICS_HEADER_V1[] =
    "step,epoch,loss,loss_q1,loss_q2,loss_q3,loss_q4,lr,grad_norm,images_per_s,elapsed_s,val_loss\n";

/* An old-layout row in the current layout: empty allreduce_wait before elapsed_s (after the 10th
 * field) and empty eta_s after it; the old run did not record them. */
static void write_v1_row(FILE *out, const char *line) {
    int commas = 0;
    for (const char *p = line; *p; p++) {
        fputc(*p, out);
        if (*p != ',') continue;
        commas++;
        if (commas == 10 || commas == 11) fputc(',', out);
    }
}

/* metrics.csv: created with a header; on resume rows after the checkpoint's step are dropped
 * (they belong to the part of the run that the checkpoint does not contain). A file in the old
 * layout (a run dir of an earlier version) is rewritten in the current one, its rows' new columns
 * empty, so one file never mixes layouts; a file whose header is neither is kept aside as
 * metrics.csv.old, with a warning, and a new one is started. */
void train_prepare_metrics(run *r) {
    if (r->d->rank != 0) return;
    char path[MDIFF_PATH_MAX + 32], tmp[MDIFF_PATH_MAX + 64], old[MDIFF_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/metrics.csv", r->cfg.run_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    snprintf(old, sizeof old, "%s.old", path);
    FILE *in = fopen(path, "r");
    char line[1024];
    int v1 = 0;
    if (in && fgets(line, sizeof line, in) && strcmp(line, METRICS_HEADER) != 0) {
        v1 = strcmp(line, METRICS_HEADER_V1) == 0;
        if (!v1) {
            fclose(in);
            in = NULL;
            if (rename(path, old) == 0)
                mdiff_warn("%s has a header this version does not know: kept as %s, a new one is started",
                           path, old);
        }
    }
    FILE *out = fopen(tmp, "w");
    if (!out) {
        if (in) fclose(in);
        mdiff_warn("cannot write %s: %s", path, strerror(errno));
        return;
    }
    fputs(METRICS_HEADER, out);
    if (in) {
        int64_t kept = 0;
        while (fgets(line, sizeof line, in)) {
            long long s;
            if (sscanf(line, "%lld,", &s) != 1 || s > r->step) continue;
            if (v1) write_v1_row(out, line);
            else fputs(line, out);
            kept++;
        }
        fclose(in);
        if (v1 && kept > 0)
            mdiff_warn("%s was in the layout of an earlier mdiff: rewritten with the columns "
                       "allreduce_wait and eta_s, empty in its old rows", path);
    }
    fclose(out);
    if (rename(tmp, path) != 0) unlink(tmp);
}

static void append_metrics(run *r, const char *row) {
    if (r->d->rank != 0) return;
    char path[MDIFF_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/metrics.csv", r->cfg.run_dir);
    FILE *f = fopen(path, "a");
    if (!f) return;
    fputs(row, f);
    fclose(f);
}

static void fmt_duration(char *buf, size_t cap, double s) {
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, cap, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60) snprintf(buf, cap, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, cap, "%lds", t);
}

void train_log_metrics(run *r, double val_loss) {
    /* loss sum, quartile sums and counts, from every rank */
    /* plus the time blocked waiting for gradient allreduces, and inside MPI for them */
    double v[11] = {r->m_loss, r->m_q[0], r->m_q[1], r->m_q[2], r->m_q[3],
                    r->m_qn[0], r->m_qn[1], r->m_qn[2], r->m_qn[3],
                    r->d->wait_seconds, r->d->comm_seconds};
    r->wait_total += r->d->wait_seconds;
    r->comm_total += r->d->comm_seconds;
    r->d->wait_seconds = r->d->comm_seconds = 0;
    mdiff_dist_sum_f64(r->d, v, 11);
    double now = mdiff_now();
    int64_t steps = r->m_steps > 0 ? r->m_steps : 1;
    double loss = v[0] / (double)steps;
    double q[4];
    for (int i = 0; i < 4; i++) q[i] = v[5 + i] > 0 ? v[1 + i] / v[5 + i] : NAN;
    double ips = (double)r->m_steps * (double)r->cfg.batch / (now - r->m_t0);
    double gn = r->m_gnorm / (double)steps;
    double lr = mdiff_lr_at(r->cfg.lr, r->cfg.warmup, r->updates > 0 ? r->updates - 1 : 0);
    int64_t epoch = r->step * r->cfg.batch / mdiff_dataset_rows(r->ds);
    double elapsed = now - r->t_start;
    double rate = (double)(r->step - r->step_start) / elapsed;
    double eta_s = rate > 0 ? (double)(r->cfg.steps - r->step) / rate : 0;
    /* share of the interval's wall time blocked on the gradient allreduce (mean over ranks) */
    double wait_share = now > r->m_t0 ? v[9] / r->d->size / (now - r->m_t0) : 0;
    char el[32], eta[32];
    fmt_duration(el, sizeof el, elapsed);
    fmt_duration(eta, sizeof eta, eta_s);
    char valtxt[48] = "", commtxt[64] = "";
    if (!isnan(val_loss)) snprintf(valtxt, sizeof valtxt, " | val %.5f", val_loss);
    if (r->d->size > 1) snprintf(commtxt, sizeof commtxt, " | allreduce wait %.1f%%", 100.0 * wait_share);
    mdiff_log("step %lld/%lld | epoch %lld | loss %.5f | by t-quartile %.4f %.4f %.4f %.4f | lr %.2e | "
              "gnorm %.3f | %.1f img/s%s | %s elapsed | eta %s%s",
              (long long)r->step, (long long)r->cfg.steps, (long long)epoch, loss, q[0], q[1], q[2],
              q[3], lr, gn, ips, commtxt, el, eta, valtxt);
    char row[512];
    char valcol[32] = "";
    if (!isnan(val_loss)) snprintf(valcol, sizeof valcol, "%.6g", val_loss);
    /* columns: METRICS_HEADER */
    snprintf(row, sizeof row, "%lld,%lld,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.4g,%.4f,%.2f,%.0f,%s\n",
             (long long)r->step, (long long)epoch, loss, q[0], q[1], q[2], q[3], lr, gn, ips,
             wait_share, elapsed, eta_s, valcol);
    append_metrics(r, row);
    r->m_loss = r->m_gnorm = 0;
    memset(r->m_q, 0, sizeof r->m_q);
    memset(r->m_qn, 0, sizeof r->m_qn);
    r->m_steps = 0;
    r->m_t0 = now;
}
