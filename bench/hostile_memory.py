"""Peak memory of the API process under decompression bombs: small files that decode huge.

Builds the bombs here (a 12000x12000 grey PNG of ~140 kB, a gzipped 1024x1024x256 NIfTI of ~0.3 MB), then
starts the API in a child process (in-process ASGI client, SQLite, no worker) that uploads them inside
dataset zips and sends 16 of the PNGs to ``POST /models/{id}/predict``; the child reports its peak RSS
(``VmHWM``) before and after. Every bomb must be refused with a 4xx.

Then the images that are NOT bombs but add up: 16 real 4096x4096 PNGs (16 kB each, within the per-image
limit) in one predict request, refused from their headers by the per-request pixel budget
(``SIKD_MAX_PREDICT_PIXELS``, ``--budget`` to change it: with a budget that admits them all they are
decoded one at a time), then one of them alone (accepted). Prints one JSON object.

    python bench/hostile_memory.py            # tests/unit/api/test_memory.py runs it with a 1 GB bound
    python bench/hostile_memory.py --budget 300000000   # admit the 16 images: time and memory of all 16
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

CHILD = r'''
import json, resource, sys, io, time, zipfile
from pathlib import Path
work = Path(sys.argv[1])
budget = {"max_predict_pixels": int(sys.argv[2])} if len(sys.argv) > 2 and sys.argv[2] else {}
from fastapi.testclient import TestClient
import torch
from api.main import create_app
from sikd_core.inference import save_bundle
from sikd_core.methods.plan import PlannedStage
from sikd_core.models import create_model
from sikd_service import crud
from sikd_service.config import Settings
from sikd_service.db import session_scope
from sikd_service.tables import Experiment, Stage

def peak_mb():
    # VmHWM: the peak RSS of this process image. ru_maxrss is not used: Linux carries it over from the
    # parent across fork + exec, so under a large parent (a long pytest run) it reports the parent's size.
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

s = Settings(storage_dir=work / "storage", admin_token="bench-admin-token-0123456789", demo_data=False, **budget)
out_budget = s.max_predict_pixels
auth = {"Authorization": "Bearer bench-admin-token-0123456789"}
out = {"statuses": {}}
with TestClient(create_app(s)) as c:
    r = c.post("/datasets", files={"file": ("ok.zip", (work / "ok.zip").read_bytes())}, data={"name": "ok"},
               headers=auth)
    assert r.status_code == 201, r.text
    ds = r.json()["id"]
    with session_scope(s) as db:  # a trained model to predict with (a tiny untrained U-Net is enough)
        user = crud.get_user_by_token(db, token="bench-admin-token-0123456789")
        plan = [PlannedStage("baseline", 0, "plain", "baseline", "baseline", None, 1, "unet")]
        exp = crud.create_experiment(db, owner=user, name="m", spec={}, plan=plan,
                                     datasets=[("train", str(ds), crud.get_dataset(db, user=user, dataset_id=ds))])
        db.flush()
        stage = exp.stages[0]
        info = {"model": "unet", "model_kwargs": {"widths": [4, 8]}, "in_channels": 1, "num_classes": 2,
                "image_size": [32, 32], "class_names": ["background", "fg"], "method": "baseline", "seed": 0}
        save_bundle(s.storage_dir / "m.pt", create_model("unet", 1, 2, widths=[4, 8]), **info)
        model = crud.create_model_row(db, stage=stage, owner_id=user.id, name="m", path="m.pt", info=info,
                                      size_bytes=1)
        model_id = model.id
    out["baseline_mb"] = peak_mb()
    for name in ("png_bomb.zip", "nifti_bomb.zip"):
        r = c.post("/datasets", files={"file": (name, (work / name).read_bytes())}, data={"name": name},
                   headers=auth)
        out["statuses"][name] = [r.status_code, r.json()["detail"][:200] + " " + " ".join(r.json().get("problems", []))[:300]]
        out[name + "_peak_mb"] = peak_mb()
    bomb = (work / "bomb.png").read_bytes()
    r = c.post(f"/models/{model_id}/predict", files=[("files", (f"b{i}.png", bomb, "image/png")) for i in range(16)],
               headers=auth)
    out["statuses"]["predict_16_bombs"] = [r.status_code, r.json()["detail"][:200]]
    out["peak_mb"] = peak_mb()
    big = (work / "big.png").read_bytes()
    for n in (16, 1):
        t = time.monotonic()
        r = c.post(f"/models/{model_id}/predict", files=[("files", (f"big{i}.png", big, "image/png")) for i in range(n)],
                   headers=auth)
        key = f"predict_{n}_4096"
        out["statuses"][key] = [r.status_code, r.json()["detail"][:300] if r.status_code != 200 else
                                f"{len(r.json()['data'])} predictions"]
        out[key + "_seconds"] = round(time.monotonic() - t, 2)
        out[key + "_peak_mb"] = peak_mb()
    out["max_predict_pixels"] = out_budget
print(json.dumps(out))
'''


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(width: int = 12_000, height: int = 12_000) -> bytes:
    """A real grey PNG of ``width x height`` zeros, compressed row by row (never held decoded)."""
    comp = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))


def nifti_bomb(shape: tuple[int, int, int] = (1024, 1024, 256)) -> bytes:
    """A real gzipped uint8 NIfTI of zeros with ``shape``, streamed through gzip (never held decoded)."""
    import nibabel as nib

    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(np.uint8)
    hdr.set_data_offset(352)
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9) as gz:
        gz.write(hdr.binaryblock + b"\x00" * 4)
        zeros = b"\x00" * (shape[0] * shape[1])
        for _ in range(shape[2]):
            gz.write(zeros)
    return buf.getvalue()


def _png(arr: np.ndarray) -> bytes:
    from PIL import Image

    b = io.BytesIO()
    Image.fromarray(arr).save(b, format="PNG")
    return b.getvalue()


def _zip(entries: dict[str, bytes]) -> bytes:
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED) as zf:
        for k, v in entries.items():
            zf.writestr(k, v)
    return b.getvalue()


def build(work: Path) -> dict[str, int]:
    rng = np.random.default_rng(0)
    ok = {}
    for i in range(4):
        ok[f"d/images/c{i}.png"] = _png(rng.integers(0, 255, (32, 32), dtype=np.uint8))
        m = np.zeros((32, 32), np.uint8)
        m[8:20, 8:20] = 255
        ok[f"d/masks/c{i}.png"] = _png(m)
    (work / "ok.zip").write_bytes(_zip(ok))
    bomb = png_bomb()
    (work / "bomb.png").write_bytes(bomb)
    big = png_bomb(4096, 4096)  # not a bomb: exactly the per-image limit, zeros (compresses to ~16 kB)
    (work / "big.png").write_bytes(big)
    (work / "png_bomb.zip").write_bytes(_zip({**ok, "d/images/c1.png": bomb}))
    nii = nifti_bomb()
    ds_json = json.dumps({"labels": {"background": 0, "x": 1}, "channel_names": {"0": "CT"}, "numTraining": 1,
                          "file_ending": ".nii.gz"}).encode()
    (work / "nifti_bomb.zip").write_bytes(_zip({"n/dataset.json": ds_json, "n/imagesTr/c_0000.nii.gz": nii,
                                                "n/labelsTr/c.nii.gz": nii}))
    return {"png_bomb_bytes": len(bomb), "nifti_bomb_bytes": len(nii), "big_png_bytes": len(big),
            "png_bomb_zip_bytes": (work / "png_bomb.zip").stat().st_size}


def run(work: Path, budget: int | None = None) -> dict:
    sizes = build(work)
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", CHILD, str(work), str(budget or "")], cwd=root, capture_output=True,
                          text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"API child failed:\n{proc.stderr[-3000:]}")
    return {**sizes, **json.loads(proc.stdout.strip().splitlines()[-1])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=int, default=None, help="SIKD_MAX_PREDICT_PIXELS of the API (default: its default)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = run(Path(tmp), args.budget)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
