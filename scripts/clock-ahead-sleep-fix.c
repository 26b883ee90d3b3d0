/*
 * Preloaded before libfaketime by scripts/clock-ahead.sh.
 *
 * Debian 12's libfaketime 0.9.10 shifts the deadline of clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, ...)
 * by the wall-clock offset even when FAKETIME_DONT_FAKE_MONOTONIC=1, so the kernel sees a negative time and
 * returns EINVAL (libfaketime issue #426). Python >= 3.11 implements time.sleep() with exactly that call, so
 * every time.sleep() under faketime fails. clock-ahead.sh moves only the wall clock (the monotonic clocks stay
 * real), so sleeping on a monotonic clock is passed to the kernel unchanged; any other clock goes to
 * libfaketime as before.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

typedef int (*clock_nanosleep_fn)(clockid_t, int, const struct timespec *, struct timespec *);

int clock_nanosleep(clockid_t clock_id, int flags, const struct timespec *req, struct timespec *rem)
{
    static clock_nanosleep_fn next;

    if (clock_id == CLOCK_MONOTONIC || clock_id == CLOCK_MONOTONIC_RAW || clock_id == CLOCK_BOOTTIME) {
        /* clock_nanosleep returns the error number instead of setting errno */
        return syscall(SYS_clock_nanosleep, clock_id, flags, req, rem) == 0 ? 0 : errno;
    }
    if (next == NULL) {
        next = (clock_nanosleep_fn)dlsym(RTLD_NEXT, "clock_nanosleep");
        if (next == NULL) {
            return ENOSYS;
        }
    }
    return next(clock_id, flags, req, rem);
}
