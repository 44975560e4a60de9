"""``deploylab bench autoscale``: how fast the simulator is (sliders need < 0.2 s a run)."""

from __future__ import annotations

import time

import numpy.typing as npt

from deploylab.autoscale.simulate import POLICY_KINDS, simulate
from deploylab.autoscale.traces import generate_trace
from deploylab.wrk import spread

#: The anchor: one week at one-minute resolution with target tracking must run in this.
BUDGET_SECONDS = 0.2


def time_policy(trace: npt.ArrayLike, policy: str, repeat: int = 5) -> list[float]:
    """Wall-clock seconds of each of ``repeat`` simulator runs."""
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        simulate(trace, policy=policy)
        seconds.append(time.perf_counter() - started)
    return seconds


def run_bench(repeat: int = 5) -> int:
    started = time.perf_counter()
    trace = generate_trace("flash-crowd", days=7, step_seconds=60)
    generated = time.perf_counter() - started
    print(
        f"trace: flash-crowd, 7 days x 1-minute steps = {len(trace):,} steps "
        f"(generated in {generated * 1000:.1f} ms)"
    )
    print(
        f"{'policy':<12} {'best of ' + str(repeat):>10} {'ms: median [min-max]':>24} "
        f"{'steps/s':>10}  best vs budget {BUDGET_SECONDS:.1f} s"
    )
    status = 0
    for policy in POLICY_KINDS:
        runs = time_policy(trace, policy, repeat)
        seconds = min(runs)
        ratio = seconds / BUDGET_SECONDS
        print(
            f"{policy:<12} {seconds * 1000:>7.1f} ms {spread([r * 1000 for r in runs]):>24} "
            f"{len(trace) / seconds:>10,.0f}  {ratio:.2f} x budget"
        )
        if policy == "target" and seconds > BUDGET_SECONDS:
            status = 1
    print("target tracking " + ("within" if status == 0 else "OVER") + " the 0.2 s budget")
    return status
