"""Group labels as integer codes: the one way the by-group statistics (intervals, survival) read their groups."""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike


def group_codes(groups: ArrayLike, length: int, what: str = "values") -> tuple[np.ndarray, np.ndarray]:
    """Each element's group code (0, 1, ...) and the group labels in sorted order.

    ``length`` is the number of ``what`` (values, durations) the groups must match one for one; a missing group
    label (NaN, None) is refused, since an element of no group would be silently dropped.

    Examples
    --------
    >>> codes, labels = group_codes(["b", "a", "b"], 3)
    >>> codes.tolist(), list(labels)
    ([1, 0, 1], ['a', 'b'])
    """
    g = np.asarray(groups).ravel()
    if g.size != length:
        raise ValueError(f"{what} and groups differ in length ({length} and {g.size})")
    codes, labels = pd.factorize(pd.Series(g), sort=True)
    if (codes < 0).any():
        raise ValueError("groups must not be missing (NaN/None)")
    return codes, np.asarray(labels)
