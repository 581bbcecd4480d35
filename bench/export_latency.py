"""Inference latency per image: the exported ONNX model in ONNX Runtime (CPU) against PyTorch (CPU).

Both sides are measured in the same run, interleaved (A B A B ...), on the same weights, inputs and thread
count; the ratio uses the medians. Two measurements per network:

* network: one preprocessed image (batch 1) through the network alone;
* end to end: raw image -> mask at its original size, i.e. ``sikd predict``'s ``predict_images`` against
  the bundle's ``predict.py`` path (numpy + Pillow recipe, onnxruntime), on real Kvasir-SEG images if the
  shared data is there (else synthetic 530x620 RGB images).

    python bench/export_latency.py                               # the paper's U-Net, 256x256
    python bench/export_latency.py --models unet,basic_unet,attention_unet,swin_unetr --json out.json
    python bench/export_latency.py --model-file run/seed_0/student/model.pt

Weights are random unless --model-file is given (latency does not depend on their values).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sikd_core.data import read_image  # noqa: E402
from sikd_core.export import runtime, write_bundle  # noqa: E402
from sikd_core.inference import load_bundle, predict_images, preprocess_image, save_bundle  # noqa: E402
from sikd_core.models import create_model  # noqa: E402


def interleaved(fns: dict[str, Callable[[], object]], reps: int, warmup: int = 2) -> dict[str, list[float]]:
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return times


def images_for_bench(n: int) -> tuple[list[np.ndarray], str]:
    shared = Path(os.environ.get("SIKD_SHARED_DATASETS", "/work/shared/datasets")) / "polyp" / "kvasir-seg" / "images"
    if shared.is_dir():
        files = sorted(shared.iterdir())[:n]
        return [read_image(f) for f in files], f"{len(files)} Kvasir-SEG images ({files[0].name}...)"
    rng = np.random.default_rng(0)
    return [(rng.random((530, 620, 3)) * 255).astype(np.float32) for _ in range(n)], f"{n} synthetic 530x620 RGB"


def bench_model(name: str, model_file: Path | None, size: int, reps: int, images: list[np.ndarray],
                work: Path) -> dict[str, object]:
    if model_file is None:
        torch.manual_seed(0)
        net = create_model(name, 3, 2).eval()
        model_file = save_bundle(work / f"{name}.pt", net, network=name, network_kwargs={}, in_channels=3, num_classes=2,
                                 image_size=[size, size], class_names=["background", "foreground"],
                                 normalization={"method": "percentile", "lower": 0.5, "upper": 99.5},
                                 method="baseline", seed=0)
    t0 = time.perf_counter()
    bundle = write_bundle(model_file, work / f"{name}-onnx", "onnx")
    export_s = time.perf_counter() - t0
    loaded = load_bundle(model_file)
    # ONNX Runtime's idle threads busy-wait by default; on a few cores that would steal the CPU from the
    # PyTorch call that follows in the interleaved timing, so they sleep here.
    exported = runtime.load(bundle, threads=torch.get_num_threads(), spinning=False)
    x = np.stack([preprocess_image(images[0], loaded.image_size, loaded.in_channels)])
    xt = torch.from_numpy(x)

    def torch_net() -> object:
        with torch.no_grad():
            return loaded.model(xt)

    net_t = interleaved({"pytorch": torch_net, "onnxruntime": lambda: exported.run(x)}, reps)
    e2e_t = interleaved({"pytorch": lambda: predict_images(loaded, images, batch_size=1),
                         "onnxruntime": lambda: exported.predict(images, batch_size=1)}, max(2, reps // 3))
    agree = np.mean([(a == b).mean() for a, b in zip(predict_images(loaded, images), exported.predict(images),
                                                     strict=True)])
    med = {k: statistics.median(v) for k, v in net_t.items()}
    e2e = {k: statistics.median(v) / len(images) for k, v in e2e_t.items()}
    return {"model": name, "image_size": list(loaded.image_size), "params": sum(p.numel() for p in loaded.model.parameters()),
            "export_seconds": export_s, "network_ms": {k: v * 1e3 for k, v in med.items()},
            "network_ratio": med["onnxruntime"] / med["pytorch"],
            "end_to_end_ms": {k: v * 1e3 for k, v in e2e.items()},
            "end_to_end_ratio": e2e["onnxruntime"] / e2e["pytorch"], "mask_agreement": float(agree)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="unet", help="comma-separated registry names (default settings each)")
    p.add_argument("--model-file", type=Path, help="a trained model.pt instead of random weights")
    p.add_argument("--size", type=int, default=256, help="network input size (random-weight models)")
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--images", type=int, default=6, help="images for the end-to-end timing")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    images, desc = images_for_bench(args.images)
    import onnxruntime as ort

    env = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs",
           "threads": args.threads, "torch": torch.__version__, "onnxruntime": ort.__version__,
           "python": platform.python_version(), "images": desc}
    print(f"# {env}")
    rows = []
    names = [args.model_file.stem] if args.model_file else args.models.split(",")
    with tempfile.TemporaryDirectory(prefix="sikd-bench-") as tmp:
        for name in names:
            r = bench_model(name, args.model_file, args.size, args.reps, images, Path(tmp))
            rows.append(r)
            print(f"done {name}: export {r['export_seconds']:.1f} s", file=sys.stderr)
    print("| network | input | params | PyTorch net ms | ORT net ms | ORT/PyTorch | PyTorch end-to-end ms/img | "
          "ORT end-to-end ms/img | ORT/PyTorch | masks equal |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        h, w = r["image_size"]
        print(f"| {r['model']} | {h}x{w} | {r['params'] / 1e6:.1f} M | {r['network_ms']['pytorch']:.1f} | "
              f"{r['network_ms']['onnxruntime']:.1f} | {r['network_ratio']:.2f} | {r['end_to_end_ms']['pytorch']:.1f} | "
              f"{r['end_to_end_ms']['onnxruntime']:.1f} | {r['end_to_end_ratio']:.2f} | {r['mask_agreement']:.6f} |")
    if args.json:
        args.json.write_text(json.dumps({"env": env, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
