"""``deploylab bench autoscale``: how fast the simulator is (sliders need < 0.2 s a run)."""

from __future__ import annotations

import time

from deploylab.autoscale.simulate import POLICY_KINDS, simulate
from deploylab.autoscale.traces import generate_trace

#: The anchor: one week at one-minute resolution with target tracking must run in this.
BUDGET_SECONDS = 0.2


def time_policy(trace, policy: str, repeat: int = 5) -> float:
    """Best wall-clock seconds of ``repeat`` simulator runs."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        simulate(trace, policy=policy)
        best = min(best, time.perf_counter() - started)
    return best


def run_bench(repeat: int = 5) -> int:
    started = time.perf_counter()
    trace = generate_trace("flash-crowd", days=7, step_seconds=60)
    generated = time.perf_counter() - started
    print(
        f"trace: flash-crowd, 7 days x 1-minute steps = {len(trace):,} steps "
        f"(generated in {generated * 1000:.1f} ms)"
    )
    print(
        f"{'policy':<12} {'best of ' + str(repeat):>10} {'steps/s':>12}  vs budget "
        f"{BUDGET_SECONDS:.1f} s"
    )
    status = 0
    for policy in POLICY_KINDS:
        seconds = time_policy(trace, policy, repeat)
        ratio = seconds / BUDGET_SECONDS
        print(
            f"{policy:<12} {seconds * 1000:>8.1f} ms {len(trace) / seconds:>12,.0f}  "
            f"{ratio:.2f} x budget"
        )
        if policy == "target" and seconds > BUDGET_SECONDS:
            status = 1
    print("target tracking " + ("within" if status == 0 else "OVER") + " the 0.2 s budget")
    return status
