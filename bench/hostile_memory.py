"""Peak memory of the API process under decompression bombs: small files that decode huge.

Part 1, decompression bombs. Builds the bombs here (a 12000x12000 grey PNG of ~140 kB, a gzipped 1024x1024x256 NIfTI of ~0.3 MB), then
starts the API in a child process (in-process ASGI client, SQLite, no worker) that uploads them inside
dataset zips and sends 16 of the PNGs to ``POST /models/{id}/predict``; the child reports its peak RSS
(``VmHWM``) before and after. Every bomb must be refused with a 4xx.

Then the images that are NOT bombs but add up: 16 real 4096x4096 PNGs (16 kB each, within the per-image
limit) in one predict request, refused from their headers by the per-request pixel budget
(``SIKD_MAX_PREDICT_PIXELS``, ``--budget`` to change it: with a budget that admits them all they are
decoded one at a time), then one of them alone (accepted). Prints one JSON object.

Part 2, bodies without a token (``--bodies``): starts a live API (``uvicorn``, SQLite) and streams 500 MB
bodies at it over loopback sockets, as ``curl -T -`` does: without a token (with a Content-Length and chunked),
with a token but over the route's limit (a JSON route, the dataset upload), and a 60 MB JSON body with a token;
meanwhile a second client polls ``GET /experiments`` every 10 ms. Reports each answer, how long it took and how
much of the body the client got to send, the server's peak RSS (``VmHWM`` of its process) before and after, and
the other client's slowest answer.

    python bench/hostile_memory.py            # tests/unit/api/test_memory.py runs it with a 1 GB bound
    python bench/hostile_memory.py --budget 300000000   # admit the 16 images: time and memory of all 16
    python bench/hostile_memory.py --bodies   # tests/unit/api/test_memory.py: no growth past a few MB, no stall
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import select
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
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
        info = {"network": "unet", "network_kwargs": {"widths": [4, 8]}, "in_channels": 1, "num_classes": 2,
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


def vm_kb(pid: int, field: str) -> int:
    """``VmHWM`` (peak RSS) or ``VmRSS`` of process ``pid`` in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for process {pid}")


def stream_body(port: int, path: str, headers: dict[str, str], total: int, chunked: bool,
                chunk: int = 1 << 20, timeout: float = 60.0) -> dict:
    """Send up to ``total`` bytes of body to ``path`` until the server answers; what it answered, when, and how
    much of the body went out before (the kernel's socket buffers included)."""
    sock = socket.create_connection(("127.0.0.1", port))
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head += "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {total}\r\n"
    sock.sendall((head + "\r\n").encode())
    block = b" " * chunk
    if chunked:
        block = f"{chunk:x}\r\n".encode() + block + b"\r\n"
    sent, answer, t0 = 0, b"", time.perf_counter()
    sock.setblocking(False)
    while time.perf_counter() - t0 < timeout:
        readable, writable, _ = select.select([sock], [sock] if sent < total else [], [], 1.0)
        if readable:
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            answer += data
            if not data or b"\r\n\r\n" in answer and len(answer.split(b"\r\n\r\n", 1)[1]) > 0:
                break
        elif writable:
            try:
                sent += sock.send(block)
                if chunked and sent >= total:
                    sock.setblocking(True)
                    sock.sendall(b"0\r\n\r\n")  # the last chunk: the body is complete
                    sock.setblocking(False)
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:  # the server closed the connection: read what it answered
                sock.setblocking(True)
                sock.settimeout(5)
                try:
                    answer += sock.recv(65536)
                except OSError:
                    pass
                break
    seconds = time.perf_counter() - t0
    sock.close()
    status_line, _, rest = answer.partition(b"\r\n")
    body = rest.partition(b"\r\n\r\n")[2]
    status = int(status_line.split()[1]) if status_line.startswith(b"HTTP/") else None
    return {"status": status, "seconds": round(seconds, 3), "sent_mb": round(sent / 2**20, 1),
            "detail": body.decode("utf-8", "replace")[:200]}


def run_bodies(work: Path, total_mb: int = 500, rounds: int = 5) -> dict:
    """Part 2 (see the module docstring) against a live ``uvicorn`` API in a child process."""
    root = Path(__file__).resolve().parents[1]
    token = "bench-admin-token-0123456789"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "SIKD_STORAGE_DIR": str(work / "live"), "SIKD_ADMIN_TOKEN": token, "SIKD_DEMO_DATA": "false",
           "PYTHONPATH": str(root) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for var in ("DATABASE_URL", "SIKD_DATABASE_URL", "REDIS_URL", "SIKD_REDIS_URL"):
        env.pop(var, None)
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "api.main:create_app", "--factory", "--host",
                             "127.0.0.1", "--port", str(port), "--log-level", "warning"], cwd=root, env=env)
    auth = {"Authorization": f"Bearer {token}"}
    base = f"http://127.0.0.1:{port}"
    try:
        t0 = time.perf_counter()
        while True:
            try:
                with urllib.request.urlopen(base + "/health", timeout=2):  # noqa: S310 - our own server
                    break
            except OSError:
                if proc.poll() is not None or time.perf_counter() - t0 > 120:
                    raise RuntimeError("the API did not start") from None
                time.sleep(0.2)
        req = urllib.request.Request(base + "/experiments", headers=auth)
        for _ in range(5):  # warm: the token cache, the first queries
            urllib.request.urlopen(req, timeout=10).read()  # noqa: S310
        out: dict = {"total_mb": total_mb, "before": {"hwm_mb": vm_kb(proc.pid, "VmHWM") / 1024,
                                                     "rss_mb": vm_kb(proc.pid, "VmRSS") / 1024}}
        polls: list[float] = []
        stop = threading.Event()

        def poll() -> None:
            while not stop.is_set():
                t = time.perf_counter()
                urllib.request.urlopen(req, timeout=30).read()  # noqa: S310
                polls.append(time.perf_counter() - t)
                stop.wait(0.01)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        json_ct = {"Content-Type": "application/json"}
        total = total_mb * 2**20
        cases = {
            "no_token_length": ("/experiments", json_ct, total, False),
            "no_token_chunked": ("/experiments", json_ct, total, True),
            "bad_token_chunked": ("/experiments", {**json_ct, "Authorization": "Bearer wrong"}, total, True),
            "no_token_upload": ("/datasets", {"Content-Type": "multipart/form-data; boundary=x"}, total, False),
            "token_length": ("/experiments", {**json_ct, **auth}, total, False),
            "token_chunked": ("/experiments", {**json_ct, **auth}, total, True),
            "token_60mb_json": ("/experiments", {**json_ct, **auth}, 60 * 2**20, False),
        }
        out["rounds"] = rounds
        out["cases"] = {name: stream_body(port, *args) for name, args in cases.items()}
        for _ in range(rounds - 1):  # the same again, the other client polling throughout: the slowest answer
            for name, args in cases.items():
                again = stream_body(port, *args)
                case = out["cases"][name]
                case["seconds"] = max(case["seconds"], again["seconds"])
                case["sent_mb"] = max(case["sent_mb"], again["sent_mb"])
                if again["status"] != case["status"]:
                    case["status"] = f"{case['status']} then {again['status']}"
        stop.set()
        poller.join(timeout=30)
        out["after"] = {"hwm_mb": vm_kb(proc.pid, "VmHWM") / 1024, "rss_mb": vm_kb(proc.pid, "VmRSS") / 1024}
        out["growth_mb"] = round(out["after"]["hwm_mb"] - out["before"]["hwm_mb"], 1)
        out["other_client"] = {"requests": len(polls), "max_ms": round(max(polls) * 1000, 1),
                               "p50_ms": round(sorted(polls)[len(polls) // 2] * 1000, 1)}
        return out
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=int, default=None, help="SIKD_MAX_PREDICT_PIXELS of the API (default: its default)")
    ap.add_argument("--bodies", action="store_true", help="large bodies with and without a token instead of bombs")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = run_bodies(Path(tmp)) if args.bodies else run(Path(tmp), args.budget)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
