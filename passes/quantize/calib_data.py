"""Calibration data: a directory of feeds, checked against the graph's inputs.

Each `.npz` file is one feed dict (one array per graph input, by name). A `.npy` file is one
feed of a model with exactly one input. Files are read in sorted name order.
"""
from __future__ import annotations

import os

import numpy as np

from ...errors import InputError
from ...ir.interpreter import check_feeds


def load_calibration_dir(path, graph) -> list:
    """The feed dicts stored in directory `path`, checked against `graph`'s inputs.

    Raises:
        InputError: not a directory, no .npy/.npz files, a .npy for a multi-input model, or a
            feed whose names, shapes or dtypes do not match the inputs (names the file).
    """
    if not os.path.isdir(path):
        raise InputError(f"calibration directory {str(path)!r} does not exist")
    files = sorted(f for f in os.listdir(path) if f.endswith((".npy", ".npz")))
    if not files:
        raise InputError(f"calibration directory {str(path)!r} holds no .npy or .npz feeds")
    feeds_list = []
    for f in files:
        full = os.path.join(path, f)
        if f.endswith(".npz"):
            with np.load(full, allow_pickle=False) as z:
                feeds_list.append({k: z[k] for k in z.files})
        elif len(graph.inputs) != 1:
            raise InputError(f"calibration file {full!r}: a .npy feeds a one-input model, but the "
                             f"model has inputs {[v.name for v in graph.inputs]}; use .npz")
        else:
            feeds_list.append({graph.inputs[0].name: np.load(full, allow_pickle=False)})
    return check_calibration_feeds(feeds_list, graph, files)


def check_calibration_feeds(feeds_list: list, graph, sources=None) -> list:
    """`feeds_list` itself after checking every feed against `graph`'s inputs (InputError naming
    the feed, or its file, otherwise)."""
    if not feeds_list:
        raise InputError("calibration needs at least one feed; got none")
    for i, feeds in enumerate(feeds_list):
        what = f"file {sources[i]!r}" if sources else f"feed {i}"
        if not isinstance(feeds, dict):
            raise InputError(f"calibration {what}: expected a dict of input name -> array, got "
                             f"{type(feeds).__name__}")
        try:
            check_feeds(graph.inputs, feeds)
        except InputError as e:
            raise InputError(f"calibration {what}: {e}") from None
    return feeds_list
