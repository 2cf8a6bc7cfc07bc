"""The publication site's index: its columns as a reader meets them."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from auditreport.config import load_config
from auditreport.presentation.provider_sections import survival_days
from auditreport.publication.site import _site_index

REPO = Path(__file__).resolve().parents[1]


def _indicators(horizons: list[int]) -> pd.DataFrame:
    """A tidy public indicator table (as the bundle's) for two providers."""
    rows = []
    for unit, name in (("A1", "Alpha"), ("B2", "Beta")):
        for indicator, value in (("crude_mortality", 0.2), ("oe_ratio", 1.1), ("risk_adjusted_mortality", 0.21)):
            rows.append({"level": "provider", "unit_id": unit, "unit_name": name, "indicator": indicator,
                         "value": value, "denominator": 120.0, "flag": "as_expected"})
        for h in horizons:
            rows.append({"level": "provider", "unit_id": unit, "unit_name": name, "indicator": f"survival_{h}d",
                         "value": 1 - h / 4000, "denominator": 120.0, "flag": ""})
    return pd.DataFrame(rows)


def test_survival_columns_in_order_of_time():
    """Horizons of 730 and 1825 days: 730 first (as text, 'survival_1825d' sorts before 'survival_730d')."""
    assert sorted(["survival_1825d", "survival_730d", "survival_30d"], key=survival_days) == [
        "survival_30d", "survival_730d", "survival_1825d"]
    html = _site_index(load_config(REPO / "params" / "lung.yaml"), _indicators([1825, 730, 30]), {}, [])
    headers = re.findall(r"Survival at (\d+) days", html)
    assert headers == ["30", "730", "1825"]
    first_row = re.search(r"<td[^>]*>Alpha</td>(.*?)</tr>", html, re.S).group(1)
    cells = re.findall(r">(\d+\.\d)%<", first_row)
    # crude 20.0%, risk-adjusted 21.0%, then S(30) 99.2%, S(730) 81.8%, S(1825) 54.4%, in the headers' order
    assert cells == ["20.0", "21.0", "99.2", "81.8", "54.4"], cells
