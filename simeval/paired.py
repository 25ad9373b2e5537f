"""Paired statistics for two policies run on the same episodes.

When two runs share their episodes, each episode is a pair of outcomes, and only the discordant
pairs (one succeeded, the other failed) say anything about which policy is better. Tests that
treat the runs as independent samples (Fisher, two-proportion z) ignore that, and lose most of the
power a shared episode set gives.

- :func:`newcombe_interval`: a 95% interval for the difference of paired proportions, Newcombe's
  method 10 (1998): Wilson score intervals for both margins, combined with the correlation of
  the pairs (phi, corrected by N/2 when positive, as Newcombe does).
- :func:`mcnemar_exact`: the exact McNemar test, a binomial test of the discordant pairs.
- :func:`holm`: Holm's step-down adjustment of a family of p-values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.stats import binomtest

from simeval.metrics import Z95, wilson_interval


@dataclass(frozen=True)
class PairedCounts:
    """The 2x2 table of paired outcomes: ``both`` succeeded, ``only_a``, ``only_b``, ``neither``."""

    both: int = 0
    only_a: int = 0
    only_b: int = 0
    neither: int = 0

    def __post_init__(self) -> None:
        if min(self.both, self.only_a, self.only_b, self.neither) < 0:
            raise ValueError(f"paired counts must be >= 0, got {self}")

    @property
    def n(self) -> int:
        return self.both + self.only_a + self.only_b + self.neither

    @property
    def rate_a(self) -> float:
        return (self.both + self.only_a) / self.n if self.n else 0.0

    @property
    def rate_b(self) -> float:
        return (self.both + self.only_b) / self.n if self.n else 0.0

    @property
    def difference(self) -> float:
        """A's success rate minus B's."""
        return (self.only_a - self.only_b) / self.n if self.n else 0.0

    def add(self, a: bool, b: bool) -> "PairedCounts":
        return PairedCounts(self.both + (a and b), self.only_a + (a and not b), self.only_b + (b and not a),
                            self.neither + (not a and not b))


def newcombe_interval(t: PairedCounts, z: float = Z95) -> tuple[float, float]:
    """Newcombe's hybrid score interval (method 10) for rate_a - rate_b on paired data."""
    if t.n == 0:
        return -1.0, 1.0
    a, b, c, d, n = t.both, t.only_a, t.only_b, t.neither, t.n
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson_interval(a + b, n, z)
    l2, u2 = wilson_interval(a + c, n, z)
    denominator = (a + b) * (c + d) * (a + c) * (b + d)
    # the correlation of the pairs, with Newcombe's correction when it is positive (AD > BC): without
    # it, a table with no discordant pair and a rate of 1/2 would get an interval of zero width
    cross = a * d - b * c
    cross = max(cross - n / 2, 0.0) if cross > 0 else cross
    phi = cross / math.sqrt(denominator) if denominator else 0.0
    diff = p1 - p2
    low = diff - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    high = diff + math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return max(-1.0, low), min(1.0, high)


def mcnemar_exact(t: PairedCounts, alternative: str = "two-sided") -> float:
    """Exact McNemar p-value: under no difference the ``only_a`` pairs are Binomial(discordant, 1/2).
    ``alternative="less"`` tests that A succeeds less often than B (a regression of A against B)."""
    discordant = t.only_a + t.only_b
    if discordant == 0:
        return 1.0
    return float(binomtest(t.only_a, discordant, 0.5, alternative=alternative).pvalue)


def holm(p_values: list[float]) -> list[float]:
    """Holm-adjusted p-values, in the given order: the k-th smallest times (m - k + 1), kept monotone."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted, running = [1.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted
