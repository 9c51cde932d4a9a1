"""Reweighing (Kamiran and Calders, 2012): row weights that make the label independent of the group.

A row of group g and label y gets the weight P(g) * P(y) / P(g, y), the expected share of its
(group, label) cell under independence over the observed share. Weighted, every group has the
same label distribution as the whole table, and the total weight equals the row count.
"""

from __future__ import annotations

import numpy as np


def kamiran_calders_weights(labels: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Return one weight per row: P(group) * P(label) / P(group, label), estimated on these rows."""
    labels = np.asarray(labels, dtype=np.int64)
    groups = np.asarray(groups, dtype=np.int64)
    if labels.shape != groups.shape:
        raise ValueError(f"labels and groups differ in length: {labels.shape[0]} and {groups.shape[0]} rows")
    if labels.size == 0:
        raise ValueError("reweighing needs at least one row")

    rows = labels.size
    n_groups, n_labels = int(groups.max()) + 1, int(labels.max()) + 1
    cells = np.zeros((n_groups, n_labels), dtype=np.float64)
    np.add.at(cells, (groups, labels), 1.0)
    group_share = cells.sum(axis=1) / rows
    label_share = cells.sum(axis=0) / rows
    # A cell without rows gets weight 0, and no row looks it up.
    expected = np.outer(group_share, label_share)
    observed = cells / rows
    with np.errstate(divide="ignore", invalid="ignore"):
        table = np.where(observed > 0, expected / observed, 0.0)
    return table[groups, labels]
