"""Input checks and per-group confusion counts, the single source of every metric.

`confusion_counts` builds a (groups, K, K) array indexed [group, true, predicted] with one
`np.bincount` over the combined code `(group * K + true) * K + predicted`. The non-zero entries of
that array are the row categories that the bootstrap resamples (see `bootstrap.py`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

GroupCodes = dict[str, tuple[np.ndarray, list[str]]]


@dataclass(frozen=True)
class Cells:
    """Non-empty row categories: group, true class, predicted class(es) and row count of each.

    `variant` is None for one model. For a paired comparison, `predicted` is the base model's
    class and `variant` the compared model's class.
    """

    group: np.ndarray
    true: np.ndarray
    predicted: np.ndarray
    variant: np.ndarray | None
    frequency: np.ndarray
    n_groups: int
    n_classes: int


def confusion_counts(
    y_true: np.ndarray, y_pred: np.ndarray, codes: np.ndarray, *, n_groups: int, n_classes: int
) -> np.ndarray:
    """Count rows per (group, true class, predicted class); returns an int64 (G, K, K) array."""
    combined = (codes.astype(np.int64) * n_classes + y_true) * n_classes + y_pred
    counts = np.bincount(combined, minlength=n_groups * n_classes * n_classes)
    return counts.reshape(n_groups, n_classes, n_classes)


def cells_from_counts(counts: np.ndarray) -> Cells:
    """List the non-zero entries of a (G, K, K) confusion count array as row categories."""
    n_groups, n_classes, _ = counts.shape
    flat_index = np.flatnonzero(counts)
    group, true, predicted = np.unravel_index(flat_index, counts.shape)
    return Cells(
        group=group,
        true=true,
        predicted=predicted,
        variant=None,
        frequency=counts.ravel()[flat_index],
        n_groups=n_groups,
        n_classes=n_classes,
    )


def paired_cells(
    y_true: np.ndarray,
    y_pred_base: np.ndarray,
    y_pred_variant: np.ndarray,
    codes: np.ndarray,
    *,
    n_groups: int,
    n_classes: int,
) -> Cells:
    """Count rows per (group, true, base prediction, variant prediction), keeping non-empty ones.

    `np.unique` replaces `np.bincount` here because the dense G x K^3 array grows too fast with K.
    """
    k = np.int64(n_classes)
    combined = ((codes.astype(np.int64) * k + y_true) * k + y_pred_base) * k + y_pred_variant
    values, frequency = np.unique(combined, return_counts=True)
    group, true, predicted, variant = np.unravel_index(values, (n_groups, n_classes, n_classes, n_classes))
    return Cells(
        group=group,
        true=true,
        predicted=predicted,
        variant=variant,
        frequency=frequency.astype(np.int64),
        n_groups=n_groups,
        n_classes=n_classes,
    )


def check_codes(
    name: str, values: np.ndarray, *, n_values: int, n_rows: int | None, kind: str = "class index"
) -> np.ndarray:
    """Return `values` as a 1-D int64 array after checking shape, dtype and the range 0..n_values-1.

    `kind` names what one value is ("class index", "group code") in error messages.
    """
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if array.dtype.kind not in "iub":
        raise TypeError(
            f"{name} must hold integer codes ({kind} per row), got dtype {array.dtype}; "
            f"map the values to 0..{n_values - 1} first"
        )
    if n_rows is not None and array.shape[0] != n_rows:
        raise ValueError(f"{name} has {array.shape[0]} rows but y_true has {n_rows}")
    if array.size == 0:
        raise ValueError(f"{name} is empty; at least one row is needed")

    array = array.astype(np.int64)
    invalid = (array < 0) | (array >= n_values)
    if invalid.any():
        row = int(np.flatnonzero(invalid)[0])
        raise ValueError(
            f"{name}[{row}] = {array[row]} is not a {kind} in 0..{n_values - 1}; "
            f"check the value count ({n_values}) and the mapping that produced the codes"
        )
    return array


def check_groups(groups: GroupCodes, *, n_rows: int) -> dict[str, tuple[np.ndarray, list[str]]]:
    """Return the group codes as int64 arrays after checking length, range and names."""
    checked = {}
    for attribute, entry in groups.items():
        if not isinstance(attribute, str) or not attribute:
            raise ValueError(f"attribute names must be non-empty strings, got {attribute!r}")
        try:
            codes, names = entry
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"groups[{attribute!r}] must be a (codes, group names) pair, got {type(entry).__name__}"
            ) from error

        names = [str(name) for name in names]
        if not names:
            raise ValueError(f"groups[{attribute!r}] has no group names")
        if len(set(names)) != len(names):
            raise ValueError(f"groups[{attribute!r}] has duplicate group names: {names}")

        codes = check_codes(
            f"groups[{attribute!r}] codes", codes, n_values=len(names), n_rows=n_rows, kind="group code"
        )
        checked[attribute] = (codes, names)
    return checked


def check_classes(n_classes: int, class_names: list[str], positive_class: int | None) -> list[str]:
    """Check the class count, names and positive class; returns the names as strings."""
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 2:
        raise ValueError(f"n_classes must be an int of 2 or more, got {n_classes!r}")
    names = [str(name) for name in class_names]
    if len(names) != n_classes:
        raise ValueError(f"class_names has {len(names)} names but n_classes is {n_classes}: {names}")
    if len(set(names)) != len(names):
        raise ValueError(f"class_names has duplicates: {names}")
    if positive_class is None:
        return names

    if n_classes != 2:
        raise ValueError(
            f"positive_class={positive_class} needs n_classes=2, got {n_classes}; "
            "pass positive_class=None for multiclass metrics"
        )
    if positive_class not in (0, 1) or isinstance(positive_class, bool):
        raise ValueError(f"positive_class must be 0 or 1, got {positive_class!r}")
    return names
