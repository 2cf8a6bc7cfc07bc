"""Numbers as report text. Plain text only: the templates escape and mark it up.

NaN is what a suppressed value carries in the public tables, so it prints as the suppression mark.
"""

from __future__ import annotations

from auditreport.rules.disclosure import SUPPRESSED


def pct(value: float, digits: int = 1) -> str:
    """A proportion as a percentage (0.123 -> "12.3%"); NaN -> "*"."""
    return SUPPRESSED if value != value else f"{value * 100:.{digits}f}%"


def num(value: float, digits: int = 2) -> str:
    """A number to ``digits`` decimals; NaN -> "*"."""
    return SUPPRESSED if value != value else f"{value:.{digits}f}"


def days(value: float) -> str:
    """A survival time in days; NaN means the median was never reached."""
    return "not reached" if value != value else f"{value:,.0f} days"


def p_value(p: float) -> str:
    """A p-value as reports print it: "p < 0.001" below 0.001, three decimals otherwise."""
    if p != p:
        return "not computable"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"
