"""HQIP flags (METHODS.md section 4) and the boundary rule."""

import numpy as np

from auditreport.rules.flags import FLAG_LABELS, FLAGS, PHE_LABELS, hqip_flag, hqip_flag_from_interval


def test_flags_and_labels():
    assert FLAGS == ("alarm_high", "alert_high", "as_expected", "alert_low", "alarm_low")
    assert all(f in FLAG_LABELS for f in FLAGS)
    assert FLAG_LABELS["alarm_high"] == "Alarm: higher than expected (above 99.8% limit)"
    assert set(PHE_LABELS.values()) == set(FLAGS)


def test_hqip_flag_rules_and_boundaries():
    v = np.array([0.1, 0.5, 0.69, 0.7, 1.0, 1.3, 1.31, 1.6, 2.0, np.nan])
    got = hqip_flag(v, 0.7, 1.3, 0.5, 1.6)
    want = ["alarm_low", "alert_low", "alert_low", "as_expected", "as_expected", "as_expected",
            "alert_high", "alert_high", "alarm_high", ""]
    # 0.5, 0.7, 1.3 and 1.6 lie exactly on a limit: inside it.
    assert got.tolist() == want
    assert got.dtype == object


def test_hqip_flag_broadcast_and_nan_limits():
    got = hqip_flag([1.0, 3.0], [0.5, np.nan], [1.5, np.nan], [0.2, np.nan], [2.0, np.nan])
    assert got.tolist() == ["as_expected", "as_expected"]
    assert hqip_flag(5.0, 0.5, 1.5, 0.2, 2.0).item() == "alarm_high"


def test_flag_from_interval():
    got = hqip_flag_from_interval([1.1, 1.05, 0.5, 0.4, 0.3, 1.0], [1.5, 1.4, 0.95, 0.9, 1.2, 1.2],
                                  [1.01, 0.99, 0.4, 0.3, 0.2, 0.9], [1.6, 1.5, 1.0, 0.99, 1.3, 1.3], 1.0)
    assert got.tolist() == ["alarm_high", "alert_high", "alert_low", "alarm_low", "as_expected", "as_expected"]
