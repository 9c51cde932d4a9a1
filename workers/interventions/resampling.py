"""Group-balanced resampling: copies of rows from small (group, label) cells, as data augmentation.

Each (group, label) cell is grown, by drawing its rows again with replacement, to the size it
would have if the label were independent of the group (the uniform sampling of Kamiran and
Calders, 2012). No row is dropped: the targets are scaled up until every cell is at least its
observed size, so the largest over-represented cell keeps its rows and the others gain copies.
"""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)

# Upper bound on the resampled table's size as a multiple of the original, so a tiny cell far below
# its expected size cannot blow up an epoch.
MAX_GROWTH = 4.0


def balanced_resample(
    index: np.ndarray, labels: np.ndarray, groups: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Return `index` plus drawn copies of rows from under-represented (group, label) cells.

    `labels` and `groups` hold the values of all rows; `index` selects the rows to resample.
    """
    index = np.asarray(index, dtype=np.int64)
    cell_labels = np.asarray(labels, dtype=np.int64)[index]
    cell_groups = np.asarray(groups, dtype=np.int64)[index]
    rows = index.size
    if rows == 0:
        raise ValueError("resampling needs at least one row")

    cells = {}
    for group in np.unique(cell_groups):
        for label in np.unique(cell_labels):
            members = index[(cell_groups == group) & (cell_labels == label)]
            expected = np.mean(cell_groups == group) * np.mean(cell_labels == label) * rows
            cells[(int(group), int(label))] = (members, expected)

    # The scale makes every target at least its cell's observed size; empty cells cannot grow.
    scale = max(len(members) / expected for members, expected in cells.values() if len(members) > 0)
    scale = min(scale, MAX_GROWTH)
    extra = []
    for members, expected in cells.values():
        missing = int(round(scale * expected)) - len(members)
        if missing > 0 and len(members) > 0:
            extra.append(rng.choice(members, size=missing, replace=True))
    if not extra:
        return index
    resampled = np.concatenate([index, *extra])
    logger.debug("resampling grew %s training rows to %s", rows, resampled.size)
    return resampled
