/* Steps the system clock (CLOCK_REALTIME) of the one process it is preloaded into, the way NTP or a technician
 * steps a room PC's clock: LD_PRELOAD=clock_step_shim.so OSCE_CLOCK_STEP_FILE=<file of one int64: nanoseconds>.
 * The test writes the step into the file while the process runs; the monotonic clock is left alone.
 * (libfaketime cannot do this here: with FAKETIME_DONT_FAKE_MONOTONIC it makes clock_nanosleep fail.) */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int (*real_clock_gettime)(clockid_t, struct timespec *);
static volatile const int64_t *step_ns;

__attribute__((constructor)) static void init(void) {
    real_clock_gettime = dlsym(RTLD_NEXT, "clock_gettime");
    const char *path = getenv("OSCE_CLOCK_STEP_FILE");
    int fd = path ? open(path, O_RDONLY) : -1;
    if (fd < 0) return;
    void *map = mmap(NULL, sizeof(int64_t), PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (map != MAP_FAILED) step_ns = map;
}

static void add_step(struct timespec *ts) {
    if (!step_ns) return;
    int64_t ns = (int64_t)ts->tv_nsec + *step_ns % 1000000000;
    ts->tv_sec += *step_ns / 1000000000 + ns / 1000000000;
    ts->tv_nsec = ns % 1000000000;
    if (ts->tv_nsec < 0) { ts->tv_nsec += 1000000000; ts->tv_sec -= 1; }
}

int clock_gettime(clockid_t clock, struct timespec *ts) {
    int rc = real_clock_gettime(clock, ts);
    if (rc == 0 && (clock == CLOCK_REALTIME || clock == CLOCK_REALTIME_COARSE)) add_step(ts);
    return rc;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz) {
    struct timespec ts;
    (void)tz;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) return -1;
    tv->tv_sec = ts.tv_sec;
    tv->tv_usec = ts.tv_nsec / 1000;
    return 0;
}

time_t time(time_t *out) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (out) *out = ts.tv_sec;
    return ts.tv_sec;
}
