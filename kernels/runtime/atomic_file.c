/* edgetrain — replacing a file atomically, naming the real cause of a failure.
 *
 * The one writer of every save (et_model_save and, through the Python
 * binding, inference-only saves). A save writes a new temporary file in the
 * target's folder, fsyncs it, renames it over the target and fsyncs the
 * folder: a crash, a kill or a full disk never leaves a half-written file
 * under the target's name, and a failed save leaves the old file unchanged.
 *
 * - The temporary is ".<name>.tmp.<pid>.<16 random hex digits>", created with
 *   O_CREAT|O_EXCL|O_NOFOLLOW: a file or symlink planted in advance is never
 *   opened or followed, and two writers (threads or processes) never share it.
 * - Temporaries of the same target left by processes that no longer exist
 *   (kill -9, power loss) are removed before writing.
 * - A target that is a symbolic link is written through: the link stays and
 *   the file it points to is replaced, as editors do.
 * - The new file keeps the target's permission bits (and, best effort, its
 *   owner); a new target gets 0666 & ~umask, as open() gives.
 * - Every message names the path the caller gave (never only the temporary)
 *   and the cause: missing folder, folder path, read-only or unwritable
 *   folder, full disk or quota, otherwise strerror.
 *
 * Test hook: EDGETRAIN_SAVE_FAULT="<step>:<errno>[:<file name>]", step one of
 * open, write, fsync, rename, makes that step fail with that errno (for files of
 * that name only, when given), so tests reach every message without a full disk.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "runtime_internal.h"

#define AFILE_BUF_BYTES ((size_t)1 << 16)
#define MAX_LINK_HOPS 40
#define MAX_TMP_BASE 200 /* bytes of the target name kept in the temporary's name (NAME_MAX 255) */
#define RANDOM_HEX 16
#define UNCHANGED "; the old file, if any, is unchanged"

enum { STEP_NONE, STEP_OPEN, STEP_WRITE, STEP_FSYNC, STEP_RENAME };

/* ---- messages ----------------------------------------------------------------------------- */
/* "cannot save '<shown>'" plus " (a link to '<target>')" when the path is a symlink. */
static int who(const et_afile *f, char *err, size_t cap) {
    if (strcmp(f->shown, f->target) == 0) return snprintf(err, cap, "cannot save '%s'", f->shown);
    return snprintf(err, cap, "cannot save '%s' (a link to '%s')", f->shown, f->target);
}

static et_status afail(const et_afile *f, char *err, size_t cap, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
static et_status afail(const et_afile *f, char *err, size_t cap, const char *fmt, ...) {
    if (!err || !cap) return ET_ERR_IO;
    int n = who(f, err, cap);
    if (n >= 0 && (size_t)n < cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err + n, cap - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return ET_ERR_IO;
}

/* The message for an errno of creating, writing, syncing or renaming the temporary file. */
static et_status errno_fail(const et_afile *f, int e, const char *step, char *err, size_t cap) {
    switch (e) {
    case EACCES:
    case EPERM:
        return afail(f, err, cap, ": the folder '%s' is not writable (permission denied)" UNCHANGED, f->dir);
    case EROFS:
        return afail(f, err, cap, ": the folder '%s' is on a read-only file system" UNCHANGED, f->dir);
    case ENOSPC:
        return afail(f, err, cap, ": the disk is full (no space left on the device of '%s')" UNCHANGED, f->dir);
#ifdef EDQUOT
    case EDQUOT:
        return afail(f, err, cap, ": the disk quota is exceeded (folder '%s')" UNCHANGED, f->dir);
#endif
    default:
        return afail(f, err, cap, ": %s failed: %s" UNCHANGED, step, strerror(e));
    }
}

/* ---- the test hook -------------------------------------------------------------------------- */
/* EDGETRAIN_SAVE_FAULT="<step>:<errno>[:<file name>]": with a name, only saves to a file of
 * that name fail (a save may write other files first, e.g. the snapshot of an inference save). */
static et_status read_fault(et_afile *f, char *err, size_t cap) {
    static const char *steps[] = {"", "open", "write", "fsync", "rename"};
    const char *v = getenv("EDGETRAIN_SAVE_FAULT");
    f->fault_step = STEP_NONE;
    if (!v || !v[0]) return ET_OK;
    const char *colon = strchr(v, ':');
    for (int k = STEP_OPEN; colon && k <= STEP_RENAME; k++) {
        if (strlen(steps[k]) != (size_t)(colon - v) || strncmp(v, steps[k], (size_t)(colon - v)) != 0) continue;
        char *end = NULL;
        long e = strtol(colon + 1, &end, 10);
        if (!end || end == colon + 1 || (*end != '\0' && *end != ':') || e <= 0 || e >= 4096) break;
        if (*end == ':' && strcmp(end + 1, f->base) != 0) return ET_OK; /* another file */
        f->fault_step = k;
        f->fault_errno = (int)e;
        return ET_OK;
    }
    return afail(f, err, cap, ": EDGETRAIN_SAVE_FAULT='%s' is not <open|write|fsync|rename>:<errno>[:<name>]"
                 UNCHANGED, v);
}

/* 1 (with errno set) if the hook fails this step. */
static int fault(const et_afile *f, int step) {
    if (f->fault_step != step) return 0;
    errno = f->fault_errno;
    return 1;
}

/* ---- paths --------------------------------------------------------------------------------- */
static char *dup_str(const char *s, size_t n) {
    char *d = (char *)et_malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* Follow symlinks of the last component (a relative link is relative to its folder).
 * Returns a heap copy of the final path, or NULL with errno (ELOOP, ENOMEM, ...). */
static char *follow_links(const char *path) {
    char *cur = dup_str(path, strlen(path));
    for (int hop = 0; cur; hop++) {
        struct stat st;
        if (lstat(cur, &st) != 0 || !S_ISLNK(st.st_mode)) return cur; /* missing, or not a link */
        if (hop == MAX_LINK_HOPS) {
            et_free(cur);
            errno = ELOOP;
            return NULL;
        }
        size_t cap = st.st_size > 0 ? (size_t)st.st_size + 1 : 4096;
        char *link = (char *)et_malloc(cap);
        ssize_t n = link ? readlink(cur, link, cap) : -1;
        if (n < 0 || (size_t)n >= cap) { /* gone or changed meanwhile: write to the name itself */
            et_free(link);
            return cur;
        }
        const char *slash = strrchr(cur, '/');
        size_t keep = (link[0] != '/' && slash) ? (size_t)(slash - cur) + 1 : 0;
        char *next = (char *)et_malloc(keep + (size_t)n + 1);
        if (next) {
            memcpy(next, cur, keep);
            memcpy(next + keep, link, (size_t)n);
            next[keep + (size_t)n] = '\0';
        }
        et_free(link);
        et_free(cur);
        cur = next;
    }
    errno = ENOMEM;
    return NULL;
}

/* Splits f->target into f->dir ("." when there is no slash) and f->base. */
static int split_target(et_afile *f) {
    const char *slash = strrchr(f->target, '/');
    if (!slash) {
        f->dir = dup_str(".", 1);
        f->base = f->target;
    } else {
        f->dir = dup_str(f->target, slash == f->target ? 1 : (size_t)(slash - f->target));
        f->base = slash + 1;
    }
    return f->dir != NULL;
}

/* ---- stale temporaries ------------------------------------------------------------------------ */
/* The pid in "<prefix><pid>.<16 hex>" (ours) or "<prefix><pid>" (the older writer's), else 0. */
static long temp_pid(const char *name, const char *prefix, size_t plen, int with_random) {
    if (strncmp(name, prefix, plen) != 0) return 0;
    const char *p = name + plen;
    long pid = 0;
    size_t digits = 0;
    for (; *p >= '0' && *p <= '9' && digits < 10; p++, digits++) pid = pid * 10 + (*p - '0');
    if (digits == 0 || pid <= 0) return 0;
    if (!with_random) return *p == '\0' ? pid : 0;
    if (*p != '.') return 0;
    for (int k = 1; k <= RANDOM_HEX; k++)
        if (!((p[k] >= '0' && p[k] <= '9') || (p[k] >= 'a' && p[k] <= 'f'))) return 0;
    return p[RANDOM_HEX + 1] == '\0' ? pid : 0;
}

static int process_gone(long pid) { return kill((pid_t)pid, 0) != 0 && errno == ESRCH; }

/* Removes ".<base>.tmp.<pid>.<hex>" (and the older "<base>.tmp.<pid>") of dead processes. */
static void remove_stale(const et_afile *f) {
    size_t blen = strlen(f->base), keep = blen < MAX_TMP_BASE ? blen : MAX_TMP_BASE;
    size_t dlen = strlen(f->dir);
    char *ours = (char *)et_malloc(keep + 8), *legacy = (char *)et_malloc(blen + 8);
    char *full = (char *)et_malloc(dlen + 2 + 256);
    DIR *d = (ours && legacy && full) ? opendir(f->dir) : NULL;
    if (d) {
        snprintf(ours, keep + 8, ".%.*s.tmp.", (int)keep, f->base);
        snprintf(legacy, blen + 8, "%s.tmp.", f->base);
        size_t olen = strlen(ours), llen = strlen(legacy);
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            long pid = temp_pid(e->d_name, ours, olen, 1);
            if (!pid) pid = temp_pid(e->d_name, legacy, llen, 0);
            if (!pid || !process_gone(pid)) continue;
            snprintf(full, dlen + 2 + 256, "%s/%s", f->dir, e->d_name);
            unlink(full);
        }
        closedir(d);
    }
    et_free(ours);
    et_free(legacy);
    et_free(full);
}

/* ---- the temporary file --------------------------------------------------------------------- */
static uint64_t random_u64(void) {
    uint64_t r = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, &r, sizeof r);
        close(fd);
        if (n == (ssize_t)sizeof r) return r;
    }
    struct timespec a, b; /* no urandom (a chroot): mix clocks, pid and an address */
    clock_gettime(CLOCK_REALTIME, &a);
    clock_gettime(CLOCK_MONOTONIC, &b);
    uint64_t x = (uint64_t)a.tv_nsec ^ ((uint64_t)a.tv_sec << 30) ^ ((uint64_t)b.tv_nsec << 17) ^
                 ((uint64_t)getpid() << 40) ^ (uint64_t)(uintptr_t)&r;
    x += 0x9E3779B97F4A7C15ull; /* splitmix64 finaliser */
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static et_status create_temp(et_afile *f, mode_t mode, char *err, size_t cap) {
    size_t blen = strlen(f->base), keep = blen < MAX_TMP_BASE ? blen : MAX_TMP_BASE;
    size_t n = strlen(f->dir) + keep + 64;
    f->tmp = (char *)et_malloc(n);
    if (!f->tmp) return afail(f, err, cap, ": out of memory" UNCHANGED);
    for (int attempt = 0; attempt < 100; attempt++) {
        snprintf(f->tmp, n, "%s/.%.*s.tmp.%ld.%016llx", f->dir, (int)keep, f->base, (long)getpid(),
                 (unsigned long long)random_u64());
        f->fd = fault(f, STEP_OPEN) ? -1 : open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
        if (f->fd >= 0) return ET_OK;
        if (errno != EEXIST) return errno_fail(f, errno, "creating a temporary file", err, cap);
    }
    return afail(f, err, cap, ": could not create a temporary file with a new name in '%s'" UNCHANGED, f->dir);
}

/* The folder must exist and the target must be a regular file (or nothing yet). */
static et_status check_target(et_afile *f, struct stat *old, int *exists, char *err, size_t cap) {
    struct stat st;
    if (f->base[0] == '\0')
        return afail(f, err, cap, ": the path ends with '/', so it is a folder, not a file" UNCHANGED);
    if (stat(f->dir, &st) != 0) {
        if (errno == ENOENT) return afail(f, err, cap, ": the folder '%s' does not exist" UNCHANGED, f->dir);
        if (errno == ENOTDIR) return afail(f, err, cap, ": '%s' is not a folder" UNCHANGED, f->dir);
        return errno_fail(f, errno, "looking up the folder", err, cap);
    }
    if (!S_ISDIR(st.st_mode)) return afail(f, err, cap, ": '%s' is not a folder" UNCHANGED, f->dir);
    *exists = lstat(f->target, old) == 0;
    if (!*exists && errno != ENOENT) return errno_fail(f, errno, "looking up the file", err, cap);
    if (*exists && S_ISDIR(old->st_mode))
        return afail(f, err, cap, ": '%s' is a folder, not a file" UNCHANGED, f->target);
    if (*exists && !S_ISREG(old->st_mode))
        return afail(f, err, cap, ": '%s' is not a regular file (a FIFO, device or socket)" UNCHANGED, f->target);
    return ET_OK;
}

et_status et_afile_open(et_afile *f, const char *path, char *err, size_t cap) {
    memset(f, 0, sizeof *f);
    f->fd = -1;
    f->shown = f->target = (char *)"";
    if (!path || !path[0]) {
        if (err && cap) snprintf(err, cap, "cannot save: the path is empty");
        return ET_ERR_ARG;
    }
    f->shown = dup_str(path, strlen(path));
    if (!f->shown) {
        if (err && cap) snprintf(err, cap, "cannot save '%s': out of memory", path);
        return ET_ERR_NOMEM;
    }
    f->target = follow_links(path);
    if (!f->target) {
        int loop = errno == ELOOP;
        f->target = f->shown;
        et_status st = loop ? afail(f, err, cap, ": too many symbolic links (a loop?)" UNCHANGED)
                            : afail(f, err, cap, ": out of memory" UNCHANGED);
        et_afile_abort(f);
        return st;
    }
    struct stat old;
    int exists = 0;
    et_status st = split_target(f) ? read_fault(f, err, cap) : afail(f, err, cap, ": out of memory" UNCHANGED);
    if (st == ET_OK) st = check_target(f, &old, &exists, err, cap);
    if (st == ET_OK) {
        remove_stale(f);
        st = create_temp(f, exists ? 0600 : 0666, err, cap);
    }
    if (st == ET_OK && exists) { /* owner first: chown may clear set-id bits that chmod then restores */
        if (old.st_uid != geteuid() || old.st_gid != getegid()) (void)fchown(f->fd, old.st_uid, old.st_gid);
        (void)fchmod(f->fd, old.st_mode & 07777);
    }
    if (st == ET_OK) {
        f->buf = (uint8_t *)et_malloc(AFILE_BUF_BYTES);
        if (!f->buf) st = afail(f, err, cap, ": out of memory" UNCHANGED);
    }
    if (st != ET_OK) et_afile_abort(f);
    return st;
}

/* ---- writing ------------------------------------------------------------------------------- */
static void set_error(et_afile *f, int e, const char *step) {
    if (!f->err) {
        f->err = e ? e : EIO;
        f->err_step = step;
    }
}

static void write_all(et_afile *f, const uint8_t *p, size_t n, uint64_t off, int positioned) {
    while (n > 0 && !f->err) {
        ssize_t w = fault(f, STEP_WRITE) ? -1
                    : positioned ? pwrite(f->fd, p, n, (off_t)off) : write(f->fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            set_error(f, w < 0 ? errno : ENOSPC, "writing");
            return;
        }
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
}

static void flush(et_afile *f) {
    write_all(f, f->buf, f->used, 0, 0);
    f->used = 0;
}

void et_afile_write(et_afile *f, const void *data, size_t n) {
    const uint8_t *p = (const uint8_t *)data;
    while (n > 0 && !f->err) {
        size_t k = AFILE_BUF_BYTES - f->used < n ? AFILE_BUF_BYTES - f->used : n;
        /* copy first, then checksum the copy: the CRC is over exactly the bytes written,
         * even if the caller's memory changes meanwhile */
        memcpy(f->buf + f->used, p, k);
        f->crc = et_crc32(f->crc, f->buf + f->used, k);
        f->used += k;
        f->pos += k;
        p += k;
        n -= k;
        if (f->used == AFILE_BUF_BYTES) flush(f);
    }
}

void et_afile_pwrite(et_afile *f, uint64_t off, const void *data, size_t n) {
    flush(f);
    write_all(f, (const uint8_t *)data, n, off, 1);
}

/* ---- finishing -------------------------------------------------------------------------------- */
static void free_names(et_afile *f) {
    if (f->shown && f->target != f->shown) et_free(f->target);
    et_free(f->shown);
    et_free(f->dir);
    et_free(f->tmp);
    et_free(f->buf);
    memset(f, 0, sizeof *f);
    f->fd = -1;
}

void et_afile_abort(et_afile *f) {
    if (f->fd >= 0) close(f->fd);
    if (f->tmp && f->fd >= 0) unlink(f->tmp);
    free_names(f);
}

/* After the rename: make the new directory entry durable. */
static et_status sync_folder(et_afile *f, char *err, size_t cap) {
    int fd = open(f->dir, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ET_OK; /* a folder we may write but not read: nothing more we can do */
    int rc = fsync(fd), e = errno;
    close(fd);
    if (rc == 0 || e == EINVAL || e == EROFS || e == EBADF) return ET_OK; /* not supported there */
    afail(f, err, cap, " durably: it was replaced, but syncing the folder '%s' failed (%s); the new file may "
          "not survive a power loss", f->dir, strerror(e));
    return ET_ERR_IO;
}

et_status et_afile_commit(et_afile *f, char *err, size_t cap) {
    flush(f);
    if (!f->err && (fault(f, STEP_FSYNC) || fsync(f->fd) != 0)) set_error(f, errno, "fsync");
    if (close(f->fd) != 0 && !f->err) set_error(f, errno, "closing");
    f->fd = -1;
    if (!f->err && (fault(f, STEP_RENAME) || rename(f->tmp, f->target) != 0)) set_error(f, errno, "renaming");
    et_status st = ET_OK;
    if (f->err) {
        unlink(f->tmp);
        st = errno_fail(f, f->err, f->err_step, err, cap);
    } else {
        st = sync_folder(f, err, cap);
    }
    free_names(f);
    return st;
}

et_status et_file_write_atomic(const char *path, const void *data, size_t size, char *err, size_t cap) {
    et_afile f;
    if (!data && size) {
        if (err && cap) snprintf(err, cap, "cannot save '%s': no data", path ? path : "");
        return ET_ERR_ARG;
    }
    et_status st = et_afile_open(&f, path, err, cap);
    if (st != ET_OK) return st;
    et_afile_write(&f, data, size);
    return et_afile_commit(&f, err, cap);
}
