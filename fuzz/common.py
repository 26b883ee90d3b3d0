"""Shared by the atheris fuzz targets (fuzz/fuzz_*.py) and their replay (tests/wire/test_fuzz_targets.py).

A target is a function ``one_input(data: bytes) -> None`` that raises only for a finding: an exception that is
not one of the project's own errors, or a datagram whose CPU cost (``time.process_time``) stays above the
bound when measured again (the least of three runs: a garbage collection or a busy machine is no finding).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the targets import tests.engine.harness and tests.wire.hostile
    sys.path.insert(0, str(ROOT))

DATAGRAM_CPU_BOUND = 0.01
"""CPU seconds one datagram may cost, uninstrumented: answering it included (a DH for a valid IKE_SA_INIT or
CREATE_CHILD_SA request); rejecting costs far less (tests/engine/test_bounded_cost.py: 5 ms)."""
INSTRUMENTED_FACTOR = 10.0
"""Coverage instrumentation under atheris slows Python code by several times."""


def cpu_bound() -> float:
    """The bound in force: FUZZ_CPU_BOUND (seconds) if set, else the uninstrumented bound, times the
    instrumentation factor while atheris runs the target."""
    if "FUZZ_CPU_BOUND" in os.environ:
        return float(os.environ["FUZZ_CPU_BOUND"])
    return DATAGRAM_CPU_BOUND * (INSTRUMENTED_FACTOR if "atheris" in sys.modules else 1.0)


class CpuBoundExceeded(AssertionError):
    """One datagram cost more CPU than the bound, three times in a row."""


def within_bound(run: Callable[[], float], what: str) -> None:
    """``run`` does the work once on fresh state and returns the CPU seconds it measured; a cost above the
    bound is measured twice more before it counts as a finding."""
    bound = cpu_bound()
    cost = run()
    if cost <= bound:
        return
    cost = min(cost, run(), run())
    if cost > bound:
        raise CpuBoundExceeded(f"{what}: {cost * 1000:.1f} ms of CPU, bound {bound * 1000:.1f} ms")


def timed(fn: Callable[[], object], allowed: tuple[type[BaseException], ...] = ()) -> float:
    """CPU seconds of ``fn()``; exceptions in ``allowed`` are expected outcomes, anything else propagates."""
    start = time.process_time()
    with contextlib.suppress(*allowed):
        fn()
    return time.process_time() - start


def run_target(one_input: Callable[[bytes], None], argv: list[str]) -> None:
    """Run ``one_input`` under atheris (libFuzzer flags in ``argv``): every module of the packages under test
    is imported first (the engine imports some lazily), then their functions are instrumented for coverage
    feedback (only ikeguard's: instrumenting all loaded code takes most of a brief run)."""
    import gc
    import importlib
    import pkgutil
    import types

    import atheris

    import ikeguard

    for module in pkgutil.walk_packages(ikeguard.__path__, "ikeguard."):
        if module.name.startswith(("ikeguard.wire", "ikeguard.engine", "ikeguard.crypto")):
            importlib.import_module(module.name)
    ours = [
        obj
        for obj in gc.get_objects()
        if isinstance(obj, types.FunctionType) and str(getattr(obj, "__module__", "")).startswith("ikeguard.")
    ]
    for func in ours:
        atheris.instrument_func(func)  # nested code (closures, lambdas) included
    print(f"INFO: instrumented {len(ours)} ikeguard functions", file=sys.stderr)
    atheris.Setup(argv, one_input)
    atheris.Fuzz()
