"""Learned task durations: a robust linear fit of run time against a task's work units, per task type.

The metrics bookkeeping workflow keeps a bounded window of measured samples per task type and worker build
(`DurationWindows`, in its state and memo); the API fits them (`fit`) when it estimates. Pure and
deterministic: the workflow runs the window's bookkeeping, so nothing here reads a clock or draws a number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import median
from typing import Any

from taskservice.work_units import MODEL_LOAD_SECONDS

# Samples kept per task type and build (the newest), and builds kept per type (the newest): the memo holds
# them all, and Temporal refuses a memo above 32 KiB (13 types x 2 builds x 24 samples ~ 10 KB at worst).
WINDOW = 24
BUILDS_PER_TYPE = 2
# A prediction is never below this (a fit through tiny samples could reach zero or below).
FLOOR_S = 0.01
BUILD_SEPARATOR = "@"


@dataclass
class DurationSample:
    """One finished task's measured run time, and what it was asked to do."""

    task_type: str
    # What ran it: the model the result names ("" when it names none), so a new model starts afresh.
    build: str
    units: float
    seconds: float


def warm_run_seconds(processing_time: float, metadata: dict[str, Any]) -> float:
    """A task's run on a warm worker: its processing time less the seconds its attempt waited for a cold
    model (`metadata.model_load_s`), a cost of the worker rather than of the task's size."""
    load = metadata.get(MODEL_LOAD_SECONDS)
    if isinstance(load, int | float) and not isinstance(load, bool) and load > 0:
        return max(FLOOR_S, processing_time - float(load))
    return processing_time


def _round(value: float) -> float:
    """Four significant digits: the memo stays small, the fit does not notice."""
    return float(f"{value:.4g}")


@dataclass
class DurationWindows:
    """The newest samples per `type@build`, as `[units, seconds]` pairs; the most recently fed key last."""

    samples: dict[str, list[list[float]]] = field(default_factory=dict)

    def add(self, sample: DurationSample) -> None:
        key = f"{sample.task_type}{BUILD_SEPARATOR}{sample.build}"
        window = self.samples.pop(key, [])
        window.append([_round(sample.units), _round(sample.seconds)])
        self.samples[key] = window[-WINDOW:]
        builds = [k for k in self.samples if k.split(BUILD_SEPARATOR, 1)[0] == sample.task_type]
        for old in builds[:-BUILDS_PER_TYPE]:
            del self.samples[old]

    def current(self, task_type: str) -> tuple[str, list[list[float]]] | None:
        """The type's newest build and its samples (the build that ran its latest task)."""
        latest = None
        for key, window in self.samples.items():
            name, build = key.split(BUILD_SEPARATOR, 1)
            if name == task_type:
                latest = (build, window)
        return latest


@dataclass(frozen=True)
class DurationFit:
    """`seconds ~ intercept_s + slope_s * units`, and how far measured times fall from it (as ratios)."""

    intercept_s: float
    slope_s: float
    samples: int
    # Measured / predicted: its median and 90th percentile scale a prediction into p50 and p90.
    ratio_p50: float
    ratio_p90: float
    # Absolute relative error of the fit on its samples: median and 90th percentile.
    error_p50: float
    error_p90: float

    def predict(self, units: float) -> float:
        return max(FLOOR_S, self.intercept_s + self.slope_s * units)

    def p50(self, units: float) -> float:
        return max(FLOOR_S, self.predict(units) * self.ratio_p50)

    def p90(self, units: float) -> float:
        return max(self.p50(units), self.predict(units) * self.ratio_p90)


def quantile(values: list[float], q: float) -> float:
    """The q-quantile by linear interpolation (values need not be sorted; at least one)."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def fit(pairs: list[list[float]]) -> DurationFit:
    """Theil-Sen: the median of the pairwise slopes (never below zero), then the median intercept; robust to
    the odd slow task (a cold model load, a busy host) that a least-squares line would follow."""
    slopes = [
        (y2 - y1) / (x2 - x1) for i, (x1, y1) in enumerate(pairs) for x2, y2 in pairs[i + 1 :] if x2 != x1
    ]
    slope = max(0.0, median(slopes)) if slopes else 0.0
    intercept = median(y - slope * x for x, y in pairs)
    line = DurationFit(intercept, slope, len(pairs), 1.0, 1.0, 0.0, 0.0)
    ratios = [y / line.predict(x) for x, y in pairs]
    errors = [abs(r - 1.0) for r in ratios]
    return DurationFit(
        intercept_s=intercept,
        slope_s=slope,
        samples=len(pairs),
        ratio_p50=quantile(ratios, 0.5),
        ratio_p90=quantile(ratios, 0.9),
        error_p50=quantile(errors, 0.5),
        error_p90=quantile(errors, 0.9),
    )
