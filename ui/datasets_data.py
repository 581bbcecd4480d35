"""Shaping datasets for the Datasets page: whether a dataset groups its cases, and the warning for video frames
without groups. Pure functions on the API's JSON."""

from __future__ import annotations

import re
from typing import Any

_NUMBERED = re.compile(r"^\D*?(\d+)\D*$")


def has_groups(stats: dict[str, Any]) -> bool:
    """Whether the dataset groups its cases (groups.csv, a datalist's groups, CVC-ClinicDB's videos): without
    groups every case is its own group, so the count of groups equals the count of cases."""
    groups, cases = int(stats.get("groups") or 0), int(stats.get("cases") or 0)
    return 0 < groups < cases


def frames_warning(dataset: dict[str, Any]) -> str | None:
    """A warning for a dataset that looks like video frames (keys numbered without gaps, one case per image)
    without groups: neighbouring frames are near-duplicates, so a split by image leaks between train and
    test and the intra scores come out too good."""
    stats = dataset.get("stats") or {}
    if has_groups(stats) or stats.get("volumetric") or dataset.get("synthetic"):
        return None
    n = int(dataset.get("num_pairs") or 0)
    if n < 20 or int(stats.get("cases") or n) < n:
        return None
    numbering = dataset.get("numbering")
    if numbering:  # the API's, over every key: the thumbnails' few keys miss the ends ("1", "10", "100", ... order)
        lo, hi, numbered = int(numbering["first"]), int(numbering["last"]), int(numbering["numbered"])
        if numbered < n:
            return None
    else:
        keys = [str(s.get("key", "")) for s in dataset.get("samples") or []]
        nums = [int(m.group(1)) for k in keys if (m := _NUMBERED.match(k))]
        if len(keys) < 2 or len(nums) < len(keys):
            return None
        lo, hi = min(nums), max(nums)
    if hi - lo > 2 * n:  # sparse numbering: probably ids, not frames
        return None
    return (f"**These may be video frames (near-duplicates) without groups:** the {n} images are numbered "
            f"{lo}…{hi} and each is its own case, so neighbouring frames can land in train and test "
            "and inflate the intra scores. Give each frame its video in a `groups.csv` (`name,group` rows) "
            "so splits keep a video together.")


def duplicates_warning(dataset: dict[str, Any]) -> str | None:
    """A warning for an upload whose content (every file, byte for byte) equals earlier datasets': it was kept
    all the same."""
    dups = dataset.get("duplicates") or []
    if not dups:
        return None
    names = ", ".join(f"**#{d['id']} {d['name']}**" for d in dups)
    return (f"**The same data was uploaded before:** {names} {'holds' if len(dups) == 1 else 'hold'} exactly these "
            "files. This one was kept all the same; delete one of them if you did not mean to upload it twice "
            "(experiments on both would share their test images).")
