"""Count the occurrences of byte strings in another process's writable memory (/proc/PID/maps + mem), to
prove that a deleted SA's keys are gone from a running process (docs/key-hygiene.md). Needs ptrace access to
the process: our own child, or root."""

from __future__ import annotations

from collections.abc import Iterable

SKIPPED = ("[vvar]", "[vsyscall]", "[vvar_vclock]")


def count_in_process(pid: int, needles: Iterable[bytes]) -> dict[bytes, int]:
    """How often each needle occurs in the readable and writable mappings of ``pid`` (heap, anonymous
    mappings, stacks, data segments): where a Python process keeps objects, freed or not."""
    counts = dict.fromkeys(needles, 0)
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if not fields[1].startswith("rw") or (len(fields) > 5 and fields[5] in SKIPPED):
                continue
            try:
                mem.seek(start)
                data = mem.read(end - start)
            except OSError:  # a mapping that went away or cannot be read (guard pages)
                continue
            for needle in counts:
                counts[needle] += data.count(needle)
    return counts
