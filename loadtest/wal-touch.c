/* loadtest/wal-touch.c: the floor (wal-floor.py) with and without a second
 * thread that takes the file's timestamp update off the writer's syncs;
 * tried for #18 and dropped (BENCHMARKS.md, "A second thread for the
 * inode's write, tried and dropped").
 *
 *   gcc -O2 -o /tmp/wal-touch loadtest/wal-touch.c -lpthread
 *   /tmp/wal-touch DIR RATE SECONDS TOUCH
 *
 * One writer takes every message due so far on an open-loop schedule of
 * RATE a second as one batch: a 4 KiB O_DIRECT write in place into a
 * preallocated 16 MiB file and an fdatasync (as wal-floor.py). With TOUCH
 * 1, a second thread waits for each clock tick (CLOCK_REALTIME_COARSE, the
 * clock the kernel stamps a file's modification time with), rewrites an
 * unused block of the same file at once and fdatasyncs it, so that on a
 * journal-less ext4 the tick's one inode write falls in its sync instead
 * of one of the writer's. Prints the writer's syncs (p99, p99.9, over
 * 2 ms), the device's writes and flushes (/proc/diskstats) and the
 * messages' p50 / p99 / p99.9 / max from due to synced.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TICK_NS 4000000LL /* this kernel's HZ is 250 */
#define FILE_BYTES (16 << 20)

static int fd;
static atomic_int stop;
static long touches;

static long long clock_ns(clockid_t clock) {
    struct timespec t;
    clock_gettime(clock, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static double seconds(void) { return clock_ns(CLOCK_MONOTONIC) / 1e9; }

static void sleep_ns(long long ns) {
    if (ns <= 0)
        return;
    struct timespec d = {ns / 1000000000LL, ns % 1000000000LL};
    nanosleep(&d, NULL);
}

/* At each tick: sleep until just before it, spin until the coarse clock
 * moves, then rewrite a block the writer never uses and sync it. */
static void *toucher(void *unused) {
    (void)unused;
    void *zeros;
    if (posix_memalign(&zeros, 4096, 4096))
        abort();
    memset(zeros, 0, 4096);
    while (!stop) {
        long long tick = clock_ns(CLOCK_REALTIME_COARSE);
        sleep_ns(tick + TICK_NS - 150000 - clock_ns(CLOCK_REALTIME));
        for (long spins = 0; clock_ns(CLOCK_REALTIME_COARSE) == tick && spins < 2000000; spins++)
            ;
        if (pwrite(fd, zeros, 4096, FILE_BYTES - 4096) != 4096 || fdatasync(fd))
            abort();
        touches++;
    }
    return NULL;
}

/* Writes and flushes completed on vda so far (/proc/diskstats). */
static void disk_counts(long *writes, long *flushes) {
    FILE *f = fopen("/proc/diskstats", "r");
    char line[512], name[64];
    long v[16];
    while (f && fgets(line, sizeof line, f)) {
        memset(v, 0, sizeof v);
        int n = sscanf(line, "%*d %*d %63s %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld",
                       name, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9],
                       &v[10], &v[11], &v[12], &v[13], &v[14], &v[15]);
        if (n >= 5 && !strcmp(name, "vda")) {
            *writes = v[4];
            *flushes = n >= 17 ? v[15] : 0;
        }
    }
    if (f)
        fclose(f);
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double ms_at(const double *sorted, long n, double p) {
    long i = (long)(p * n);
    return sorted[i < n ? i : n - 1] * 1000;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s DIR RATE SECONDS TOUCH(0|1)\n", argv[0]);
        return 2;
    }
    double rate = atof(argv[2]), run = atof(argv[3]);
    int touch = atoi(argv[4]);
    char path[4096];
    snprintf(path, sizeof path, "%s/vato-wal-touch.tmp", argv[1]);
    int fill = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    char *zeros = calloc(1, FILE_BYTES);
    if (fill < 0 || !zeros || write(fill, zeros, FILE_BYTES) != FILE_BYTES || fsync(fill))
        return perror(path), 1;
    close(fill);
    fd = open(path, O_RDWR | O_DIRECT);
    void *block;
    if (fd < 0 || posix_memalign(&block, 4096, 4096))
        return perror(path), 1;
    memset(block, 'w', 4096);
    pthread_t thread;
    if (touch)
        pthread_create(&thread, NULL, toucher, NULL);
    usleep(50000);

    long total = (long)(run * rate), taken = 0, n = 0, pos = 0;
    double *latency = malloc(sizeof(double) * total), *sync = malloc(sizeof(double) * total);
    double interval = 1.0 / rate, start = seconds() + 0.1;
    long writes0, flushes0, writes1, flushes1;
    disk_counts(&writes0, &flushes0);
    while (taken < total) {
        double now = seconds();
        long due = now >= start ? (long)((now - start) / interval) + 1 : 0;
        if (due > total)
            due = total;
        if (due <= taken) {
            sleep_ns((long long)((start + taken * interval - now) * 1e9));
            continue;
        }
        double t = seconds();
        if (pwrite(fd, block, 4096, pos) != 4096 || fdatasync(fd))
            return perror("write"), 1;
        double done = seconds();
        sync[n++] = done - t;
        for (long i = taken; i < due; i++)
            latency[i] = done - (start + i * interval);
        taken = due;
        pos = (pos + 4096) % (1 << 20);
    }
    disk_counts(&writes1, &flushes1);
    stop = 1;
    if (touch)
        pthread_join(thread, NULL);
    close(fd);
    unlink(path);

    qsort(latency, total, sizeof(double), by_value);
    qsort(sync, n, sizeof(double), by_value);
    long slow = 0;
    for (long i = 0; i < n; i++)
        slow += sync[i] > 0.002;
    printf("touch=%d syncs=%ld touches=%ld disk_writes=%ld disk_flushes=%ld sync_p99=%.2fms "
           "sync_p99.9=%.2fms syncs_over_2ms=%ld p50=%.2fms p99=%.2fms p99.9=%.2fms max=%.2fms\n",
           touch, n, touches, writes1 - writes0, flushes1 - flushes0, ms_at(sync, n, 0.99),
           ms_at(sync, n, 0.999), slow, ms_at(latency, total, 0.5), ms_at(latency, total, 0.99),
           ms_at(latency, total, 0.999), latency[total - 1] * 1000);
    return 0;
}
