/* edgetrain — the atomic file writer (runtime/atomic_file.c): contents, the
 * message of every cause (real where a test can create it, else through the
 * EDGETRAIN_SAVE_FAULT hook), permissions, symlinks, stale temporaries, and
 * the CRC taken over the bytes as written. Runs in a fresh folder under /tmp. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "et_test.h"
#include "runtime_internal.h"

static char dir[64];

static const char *in_dir(const char *name) {
    static char buf[4][sizeof dir + 272];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static int read_back(const char *path, char *out, size_t cap) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t n = fread(out, 1, cap - 1, f);
    fclose(f);
    out[n] = '\0';
    return (int)n;
}

static int count_temporaries(void) {
    int n = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        if (strstr(e->d_name, ".tmp.")) n++;
    if (d) closedir(d);
    return n;
}

static void remove_all(void) {
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            const char *p = in_dir(e->d_name);
            if (unlink(p) != 0) {
                char sub[300];
                snprintf(sub, sizeof sub, "%s", p);
                rmdir(sub);
            }
        }
    if (d) closedir(d);
}

static et_status put(const char *path, const char *text, char *err) {
    return et_file_write_atomic(path, text, strlen(text), err, ET_MSG_CAP);
}

static void test_contents_and_causes(void) {
    char err[ET_MSG_CAP], got[256];
    const char *t = in_dir("t.bin");
    ET_CHECK(put(t, "first", err) == ET_OK, "write: %s", err);
    ET_CHECK(read_back(t, got, sizeof got) == 5 && strcmp(got, "first") == 0, "contents: '%s'", got);
    ET_CHECK(put(t, "second", err) == ET_OK && read_back(t, got, sizeof got) == 6, "replace: %s", err);
    ET_CHECK(count_temporaries() == 0, "no temporary left after a save");

    ET_CHECK(put(in_dir("missing/t.bin"), "x", err) == ET_ERR_IO && strstr(err, "does not exist") &&
             strstr(err, "missing/t.bin") && strstr(err, "unchanged"), "missing folder: %s", err);
    ET_CHECK(put(dir, "x", err) == ET_ERR_IO && strstr(err, "is a folder"), "folder path: %s", err);
    ET_CHECK(put(in_dir("t.bin/x"), "x", err) == ET_ERR_IO && strstr(err, "is not a folder"), "file as folder: %s",
             err);
    ET_CHECK(put("", "x", err) == ET_ERR_ARG, "empty path");

    static const struct { const char *fault; const char *phrase; } faults[] = {
        {"open:13:t.bin", "is not writable (permission denied)"},
        {"open:30:t.bin", "is on a read-only file system"},
        {"write:28:t.bin", "the disk is full"},
#ifdef EDQUOT
        {"write:122:t.bin", "the disk quota is exceeded"},
#endif
        {"fsync:5:t.bin", "fsync failed"},
        {"rename:30:t.bin", "is on a read-only file system"},
    };
    for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++) {
        setenv("EDGETRAIN_SAVE_FAULT", faults[i].fault, 1);
        et_status st = put(t, "third", err);
        ET_CHECK(st == ET_ERR_IO && strstr(err, faults[i].phrase) && strstr(err, t) && strstr(err, "unchanged") &&
                 !strstr(err, ".tmp."), "%s: %s", faults[i].fault, err);
        ET_CHECK(read_back(t, got, sizeof got) == 6 && strcmp(got, "second") == 0, "%s: old file kept",
                 faults[i].fault);
        ET_CHECK(count_temporaries() == 0, "%s: no temporary left", faults[i].fault);
    }
    setenv("EDGETRAIN_SAVE_FAULT", "write:28:other.bin", 1);
    ET_CHECK(put(t, "fourth", err) == ET_OK, "the hook with a name leaves other files alone: %s", err);
    unsetenv("EDGETRAIN_SAVE_FAULT");
}

static void test_permissions_and_links(void) {
    char err[ET_MSG_CAP], got[256];
    struct stat st;
    const char *t = in_dir("p.bin");
    ET_CHECK(put(t, "a", err) == ET_OK && chmod(t, 0600) == 0, "setup: %s", err);
    mode_t old = umask(022);
    ET_CHECK(put(t, "b", err) == ET_OK && stat(t, &st) == 0 && (st.st_mode & 07777) == 0600,
             "0600 stays 0600 (got %o)", (unsigned)(st.st_mode & 07777));
    umask(027);
    const char *n = in_dir("new.bin");
    ET_CHECK(put(n, "c", err) == ET_OK && stat(n, &st) == 0 && (st.st_mode & 07777) == 0640,
             "a new file gets 0666 & ~umask (got %o)", (unsigned)(st.st_mode & 07777));
    umask(old);

    const char *link = in_dir("link.bin");
    ET_CHECK(symlink("p.bin", link) == 0, "symlink");
    ET_CHECK(put(link, "through", err) == ET_OK, "save through a link: %s", err);
    ET_CHECK(lstat(link, &st) == 0 && S_ISLNK(st.st_mode), "the link stays a link");
    ET_CHECK(read_back(t, got, sizeof got) == 7 && strcmp(got, "through") == 0, "the link's target is replaced");
    ET_CHECK(stat(t, &st) == 0 && (st.st_mode & 07777) == 0600, "and keeps its permissions");
    const char *loop = in_dir("loop.bin");
    ET_CHECK(symlink("loop.bin", loop) == 0 && put(loop, "x", err) == ET_ERR_IO && strstr(err, "symbolic links"),
             "a link loop: %s", err);
}

static void test_stale_and_names(void) {
    char err[ET_MSG_CAP], name[256];
    pid_t child = fork();
    if (child == 0) _exit(0);
    waitpid(child, NULL, 0); /* now a pid of no process */
    snprintf(name, sizeof name, ".s.bin.tmp.%ld.0123456789abcdef", (long)child);
    FILE *f = fopen(in_dir(name), "wb");
    if (f) fclose(f);
    snprintf(name, sizeof name, ".s.bin.tmp.%ld.0123456789abcdef", (long)getpid());
    f = fopen(in_dir(name), "wb");
    if (f) fclose(f);
    ET_CHECK(count_temporaries() == 2, "setup");
    ET_CHECK(put(in_dir("s.bin"), "x", err) == ET_OK, "save: %s", err);
    ET_CHECK(count_temporaries() == 1 && access(in_dir(name), F_OK) == 0,
             "the dead process's temporary is removed, the live one's kept");
    unlink(in_dir(name));

    /* two writers of one target get different temporaries, created O_EXCL */
    et_afile a, b;
    ET_CHECK(et_afile_open(&a, in_dir("s.bin"), err, sizeof err) == ET_OK, "open a: %s", err);
    ET_CHECK(et_afile_open(&b, in_dir("s.bin"), err, sizeof err) == ET_OK, "open b: %s", err);
    snprintf(name, sizeof name, "%s/.s.bin.tmp.%ld.", dir, (long)getpid());
    ET_CHECK(strncmp(a.tmp, name, strlen(name)) == 0 && strlen(a.tmp) == strlen(name) + 16, "name: %s", a.tmp);
    ET_CHECK(strcmp(a.tmp, b.tmp) != 0, "unique temporaries");

    /* the CRC is over the bytes as written; a header written last lands at offset 0 */
    static const char body[] = "0123456789abcdefghij";
    et_afile_write(&a, "HEAD", 4);
    a.crc = 0;
    et_afile_write(&a, body, sizeof body - 1);
    ET_CHECK(a.crc == et_crc32(0, body, sizeof body - 1) && a.pos == 24, "running CRC and position");
    et_afile_pwrite(&a, 0, "head", 4);
    ET_CHECK(et_afile_commit(&a, err, sizeof err) == ET_OK, "commit: %s", err);
    et_afile_abort(&b);
    char got[256];
    ET_CHECK(read_back(in_dir("s.bin"), got, sizeof got) == 24 && strncmp(got, "head0123", 8) == 0, "contents '%s'",
             got);
    ET_CHECK(count_temporaries() == 0, "abort removes its temporary");
}

void test_atomic_file(void) {
    snprintf(dir, sizeof dir, "/tmp/et_atomic_XXXXXX");
    if (!mkdtemp(dir)) {
        ET_CHECK(0, "mkdtemp: %s", strerror(errno));
        return;
    }
    test_contents_and_causes();
    test_permissions_and_links();
    test_stale_and_names();
    remove_all();
    rmdir(dir);
}
