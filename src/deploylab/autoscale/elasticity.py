"""How good an autoscaler is: the SPEC Research Group elasticity metrics (as in BUNGEE).

Demand and supply are step functions sampled every ``step`` time units, in resource units
(instances). Accuracies are average instance deficits/surpluses; timeshares are fractions of
the run; jitter is (supply changes − demand changes) per time unit: negative means the
autoscaler lags behind changes, positive means it oscillates.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def elasticity_metrics(
    demand: npt.ArrayLike, supply: npt.ArrayLike, step: float = 1.0
) -> dict[str, float]:
    """Under/over-provisioning accuracy and timeshare, and jitter.

    >>> m = elasticity_metrics([2, 2, 4, 4, 3], [2, 2, 2, 4, 5])
    >>> m["accuracy_under"], m["accuracy_over"], m["timeshare_under"], m["jitter"]
    (0.4, 0.4, 0.2, 0.0)
    """
    d = np.asarray(demand, dtype=float)
    s = np.asarray(supply, dtype=float)
    if d.shape != s.shape or d.ndim != 1 or len(d) == 0:
        raise ValueError(
            f"demand and supply must be equally long, non-empty 1-D series (got {d.shape} and "
            f"{s.shape})"
        )
    if step <= 0:
        raise ValueError(f"step {step} must be positive")
    total = len(d) * step
    difference = d - s
    demand_changes = int(np.count_nonzero(np.diff(d)))
    supply_changes = int(np.count_nonzero(np.diff(s)))
    return {
        "accuracy_under": float(np.clip(difference, 0, None).sum() * step / total),
        "accuracy_over": float(np.clip(-difference, 0, None).sum() * step / total),
        "timeshare_under": float(np.count_nonzero(difference > 0) * step / total),
        "timeshare_over": float(np.count_nonzero(difference < 0) * step / total),
        "jitter": (supply_changes - demand_changes) / total,
    }
