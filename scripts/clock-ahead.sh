#!/usr/bin/env bash
# Run a command with the wall clock moved ahead, for it and for every process it starts (strongSwan, rsyslog,
# openssl, ikeguard gateways): `scripts/clock-ahead.sh [DAYS] -- COMMAND...` (DAYS defaults to 365).
#
# libfaketime (Debian package `faketime`) is preloaded: it shifts time(), gettimeofday(), clock_gettime() on the
# wall clock, which is what OpenSSL, GnuTLS, cryptography, Python's datetime and strongSwan read. File times are
# not moved (NO_FAKE_STAT=1; glibc >= 2.33 reaches statx/fstatat directly, which libfaketime 0.9.10 does not
# intercept anyway), so a file written during the run looks DAYS old. The monotonic clocks stay real (FAKETIME_DONT_FAKE_MONOTONIC=1): faking them makes
# Python's timed lock waits, which glibc passes to the kernel directly, wait a year. libfaketime 0.9.10 (Debian 12)
# gets two waits on the real monotonic clock wrong in that mode: pthread_cond_timedwait on a CLOCK_MONOTONIC
# condition variable returns at once (strongSwan's scheduler uses these; FAKETIME_FORCE_MONOTONIC_FIX=0 keeps the
# deadline as given) and clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME) fails with EINVAL (Python's time.sleep;
# fixed by scripts/clock-ahead-sleep-fix.c, compiled here and preloaded first). Statically linked programs and programs that read the vDSO directly are not affected by
# LD_PRELOAD; tests/test_clock_ahead.py checks that everything the suite relies on does see the moved clock.
set -euo pipefail
days=365
if [[ $# -gt 0 && "$1" != "--" ]]; then
    days=$1
    shift
fi
[[ "${1:-}" == "--" ]] && shift
if [[ $# -eq 0 ]]; then
    echo "usage: $0 [DAYS] -- COMMAND..." >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
lib=""
for candidate in /usr/lib/*/faketime/libfaketime.so.1 /usr/lib/faketime/libfaketime.so.1; do
    [[ -e "$candidate" ]] && { lib=$candidate; break; }
done
if [[ -z "$lib" ]]; then
    echo "clock-ahead: libfaketime not found (Debian package faketime; make test installs it)" >&2
    exit 1
fi
if ! command -v cc >/dev/null; then
    echo "clock-ahead: a C compiler is needed for the libfaketime fix (Debian package gcc)" >&2
    exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cc -shared -fPIC -O2 -Wall -Wextra -Werror -o "$work/sleep-fix.so" "$here/clock-ahead-sleep-fix.c" -ldl
export LD_PRELOAD="$work/sleep-fix.so $lib${LD_PRELOAD:+ $LD_PRELOAD}"
export FAKETIME="+${days}d" FAKETIME_DONT_FAKE_MONOTONIC=1 FAKETIME_FORCE_MONOTONIC_FIX=0 NO_FAKE_STAT=1
# Not exec: the trap removes the compiled fix when the command ends.
"$@"
