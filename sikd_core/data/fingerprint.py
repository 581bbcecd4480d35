"""A dataset's content fingerprint: what a stage key (:func:`sikd_core.methods.plan.stage_key`) knows of its data.

It hashes the bytes of every file a manifest reads and the manifest's own facts (samples with their paths
relative to the dataset root, case and group ids, slices, spacing, fixed splits, classes, channels, how masks are
read), never the dataset's name, id or location: the same files uploaded twice, or a folder moved, fingerprint
the same; one changed pixel does not.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from sikd_core.data.manifest import Manifest

#: Bump when what is hashed changes.
FINGERPRINT_VERSION = 1
_CHUNK = 1024 * 1024


def manifest_fingerprint(manifest: Manifest) -> str:
    """SHA-256 hex digest of the dataset's content (see the module docstring)."""
    h = hashlib.sha256()
    samples = []
    files: dict[str, str] = {}
    for s in manifest.samples:
        d = s.to_dict()
        d.pop("dataset", None)  # the dataset's name
        d["image"] = [manifest.rel(p) for p in s.image]
        d["label"] = manifest.rel(s.label) if s.label else None
        files.update({rel: str(p) for rel, p in zip(d["image"], s.image, strict=True)})
        if s.label:
            files[d["label"]] = str(s.label)
        samples.append(d)
    facts = {"version": FINGERPRINT_VERSION, "format": manifest.format, "class_names": list(manifest.class_names),
             "in_channels": manifest.in_channels, "mask_mode": manifest.mask_mode,
             "volumetric": manifest.volumetric, "samples": samples}
    h.update(json.dumps(facts, sort_keys=True, separators=(",", ":")).encode())
    for rel in sorted(files):
        h.update(b"\0file\0" + rel.encode() + b"\0")
        with open(Path(files[rel]), "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
    return h.hexdigest()
