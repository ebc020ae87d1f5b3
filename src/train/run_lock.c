/* train/run_lock: one job per run directory. Two jobs training into one directory (a double
 * submission, an array job whose tasks share --run-dir) would resume from each other's latest.h5
 * and interleave their checkpoints, so rank 0 holds flock(LOCK_EX) on RUN_DIR/.lock for the life
 * of the job, with a holder record (host, PID, SLURM job, start time) in it to name the holder.
 *
 * The kernel (or the NFS/Lustre lock manager) drops a flock when its process dies, so a crashed
 * job never blocks a later one when flock works. Where it does not (ENOLCK, EOPNOTSUPP: NFS
 * without lockd, Lustre mounted noflock) or may be local to one host (NFS nolock/local_lock,
 * Lustre localflock), the record decides: every exit path mdiff controls removes the lock file,
 * so only a job killed outright leaves a record behind. A record of this host is judged by flock (free: its
 * holder is dead) or, without flock, by its PID; one of this SLURM job is this job's own earlier
 * run (a requeue); one of another host's job cannot be checked from here and is refused unless
 * MDIFF_FORCE_UNLOCK=1 (README, "One job per run directory"). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "train_internal.h"

typedef struct {
    char host[256], pid[32], job[64], started[64];
} holder;

static int g_lock_fd = -1; /* rank 0's lock; one run per process at a time */
static char g_lock_path[MDIFF_PATH_MAX + 16];

static void field(const char *text, const char *key, char *out, size_t cap) {
    out[0] = '\0';
    size_t k = strlen(key);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, key, k) != 0 || p[k] != '=') continue;
        size_t n = strcspn(p + k + 1, "\n");
        if (n >= cap) n = cap - 1; /* a record is ours or hand-made: truncating a name is harmless */
        memcpy(out, p + k + 1, n);
        out[n] = '\0';
        return;
    }
}

static void this_holder(holder *h) {
    if (gethostname(h->host, sizeof h->host) != 0) mdiff_strcpy(h->host, sizeof h->host, "unknown");
    h->host[sizeof h->host - 1] = '\0';
    snprintf(h->pid, sizeof h->pid, "%ld", (long)getpid());
    const char *job = getenv("SLURM_JOB_ID");
    snprintf(h->job, sizeof h->job, "%s", job ? job : "");
    time_t now = time(NULL);
    struct tm tm;
    strftime(h->started, sizeof h->started, "%Y-%m-%d %H:%M:%S UTC", gmtime_r(&now, &tm));
}

/* The record in the lock file (empty holder when there is none or it is not ours to read). */
static void read_holder(int fd, holder *h) {
    char text[1024];
    ssize_t n = pread(fd, text, sizeof text - 1, 0);
    text[n > 0 ? n : 0] = '\0';
    field(text, "host", h->host, sizeof h->host);
    field(text, "pid", h->pid, sizeof h->pid);
    field(text, "slurm_job", h->job, sizeof h->job);
    field(text, "started", h->started, sizeof h->started);
}

static void describe(const holder *h, char *out, size_t cap) {
    snprintf(out, cap, "host %s, PID %s%s%s, started %s", h->host[0] ? h->host : "?",
             h->pid[0] ? h->pid : "?", h->job[0] ? ", SLURM job " : "", h->job,
             h->started[0] ? h->started : "?");
}

static int pid_alive(const char *pid) {
    char *end;
    long p = strtol(pid, &end, 10);
    if (pid[0] == '\0' || *end != '\0' || p <= 0) return 0;
    return kill((pid_t)p, 0) == 0 || errno == EPERM;
}

/* What the record says when flock cannot: 0 free (no holder, or one known to be gone), 1 a live
 * holder on this host, 2 a holder on another host that this host cannot check. */
static int judge_record(const holder *rec, const holder *me, int flock_ok) {
    if (!rec->host[0] && !rec->pid[0]) return 0;
    if (rec->job[0] && strcmp(rec->job, me->job) == 0) return 0; /* SLURM runs a job id once at a time */
    if (strcmp(rec->host, me->host) == 0)
        return !flock_ok && strcmp(rec->pid, me->pid) != 0 && pid_alive(rec->pid) ? 1 : 0;
    const char *force = getenv("MDIFF_FORCE_UNLOCK");
    return force && strcmp(force, "1") == 0 ? 0 : 2;
}

static void write_holder(int fd, const holder *h) {
    char text[1024];
    int n = snprintf(text, sizeof text,
                     "# mdiff-train holds this run dir (README: One job per run directory)\n"
                     "host=%s\npid=%s\nslurm_job=%s\nstarted=%s\n", h->host, h->pid, h->job,
                     h->started);
    if (ftruncate(fd, 0) != 0 || pwrite(fd, text, (size_t)n, 0) != n || fsync(fd) != 0)
        mdiff_warn("cannot write the holder record of the run-dir lock: %s", strerror(errno));
}

/* Removes the lock file while still holding it, then drops the lock: a finished run leaves
 * nothing behind, and the fallback without flock sees no holder. A job that opened the file just
 * before the unlink finds its inode gone after its flock and starts over (open_locked). */
void train_unlock_run_dir(void) {
    if (g_lock_fd < 0) return;
    if (unlink(g_lock_path) != 0 && ftruncate(g_lock_fd, 0) != 0) { /* the flock goes anyway */ }
    close(g_lock_fd);
    g_lock_fd = -1;
}

/* 1 when fd is still the file at path (not unlinked or replaced by its holder meanwhile). */
static int same_file(int fd, const char *path) {
    struct stat a, b;
    return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

static int try_flock(int fd) {
    int rc;
    while ((rc = flock(fd, LOCK_EX | LOCK_NB)) != 0 && errno == EINTR) {}
    return rc;
}

/* The refusal, one line, into msg. */
static void refuse(char *msg, size_t cap, const char *dir, const holder *rec, int checkable) {
    char who[600];
    describe(rec, who, sizeof who);
    const char *array = getenv("SLURM_ARRAY_TASK_ID") ? " (array tasks: put %a in --run-dir)" : "";
    if (checkable)
        snprintf(msg, cap, "run dir %s is in use by another job (%s; lock %s/.lock): wait for it to "
                 "finish, or use another --run-dir%s", dir, who, dir, array);
    else
        snprintf(msg, cap, "run dir %s may be in use by another job (%s; lock %s/.lock), which this "
                 "host cannot check: wait for it or use another --run-dir%s; if that job is gone "
                 "(squeue -j %s), rerun with MDIFF_FORCE_UNLOCK=1", dir, who, dir, array,
                 rec->job[0] ? rec->job : "ID");
}

/* Opens path and tries the lock, until the file locked is the one at path: *flock_ok = 1 when
 * flock succeeded; rec = the record found. -1 (errno set) when it cannot be opened. */
static int open_locked(const char *path, holder *rec, int *flock_ok) {
    for (int tries = 0;; tries++) {
        /* no O_TRUNC: the record belongs to the holder until we hold the lock */
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0664);
        if (fd < 0) return -1;
        read_holder(fd, rec);
        *flock_ok = try_flock(fd) == 0;
        if (!*flock_ok || same_file(fd, path) || tries == 100) return fd;
        close(fd); /* its holder removed it as we opened it: lock the new one */
    }
}

int train_lock_run_dir(const char *dir, char *msg, size_t cap) {
    char path[MDIFF_PATH_MAX + 16];
    mdiff_snprintf(path, sizeof path, "%s/.lock", dir);
    holder me, rec;
    this_holder(&me);
    int flock_ok;
    int fd = open_locked(path, &rec, &flock_ok);
    if (fd < 0) {
        snprintf(msg, cap, "cannot open the lock file %s: %s (choose a writable --run-dir)", path,
                 strerror(errno));
        return -1;
    }
    if (!flock_ok && (errno == EWOULDBLOCK || errno == EAGAIN)) {
        if (!rec.host[0] && !rec.pid[0])
            snprintf(msg, cap, "run dir %s is locked by another process (%s has no holder record "
                     "yet): wait for it to finish, or use another --run-dir", dir, path);
        else
            refuse(msg, cap, dir, &rec, 1);
        close(fd);
        return -1;
    }
    int flock_errno = errno; /* of the flock: open_locked returns right after it */
    int verdict = judge_record(&rec, &me, flock_ok);
    if (verdict != 0) {
        refuse(msg, cap, dir, &rec, verdict == 1);
        close(fd);
        return -1;
    }
    if (!flock_ok) /* after the verdict: a refusal stays one line */
        mdiff_warn("flock on %s is not supported here (%s): deciding from its holder record alone "
                   "(README: One job per run directory)", path, strerror(flock_errno));
    if (rec.pid[0] && strcmp(rec.pid, me.pid) != 0) {
        char who[600];
        describe(&rec, who, sizeof who);
        mdiff_warn("taking over %s from a job that ended without releasing it (%s)", path, who);
    }
    write_holder(fd, &me);
    mdiff_strcpy(g_lock_path, sizeof g_lock_path, path);
    g_lock_fd = fd;
    mdiff_at_exit(train_unlock_run_dir);
    return 0;
}
