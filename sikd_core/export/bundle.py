"""Write a self-contained export bundle of a trained model.

A bundle folder holds everything a deployment needs and nothing of SIKD Studio::

    model.onnx | model.ts     the network (input ``B,C,h,w`` float32 -> logits ``B,K,h,w``)
    recipe.json               the versioned pre/postprocessing recipe (``sikd-preprocess/1``), class names, io
    predict.py                the recipe's implementation + a CLI (numpy, Pillow, onnxruntime only)
    sikd_dicom.py             DICOM series in, DICOM SEG out, used by predict.py when pydicom + highdicom are there
    requirements.txt          exactly those dependencies
    model_card.md / .json     the model card
    README.md                 how to run it
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import zipfile
from pathlib import Path
from typing import Any

import torch

from sikd_core.data import dicom_series
from sikd_core.errors import SIKDError
from sikd_core.export import exporters, runtime
from sikd_core.inference import LoadedModel, load_bundle

log = logging.getLogger(__name__)

REQUIREMENTS = {
    "onnx": "onnxruntime>=1.17\nnumpy>=1.24\nPillow>=9\n",
    "torchscript": f"torch>={torch.__version__.split('+')[0]}\nnumpy>=1.24\nPillow>=9\n",
}
MODEL_FILES = {"onnx": "model.onnx", "torchscript": "model.ts"}


def make_recipe(loaded: LoadedModel, fmt: str, check: dict[str, Any] | None = None) -> dict[str, Any]:
    """The bundle's ``recipe.json``: every step between an image file and its class map, declared."""
    info = loaded.info
    norm = info.get("normalization") or {"method": "percentile", "lower": 0.5, "upper": 99.5}
    if norm.get("method") != "percentile":
        raise SIKDError(f"cannot export a model with normalisation {norm!r}; recipe {runtime.RECIPE} is percentile")
    h, w = loaded.image_size
    return {
        "recipe": runtime.RECIPE,
        "format": fmt,
        "model_file": MODEL_FILES[fmt],
        "opset": exporters.ONNX_OPSET if fmt == "onnx" else None,
        "exporter": (f"torch.onnx.export(dynamo=True), torch {torch.__version__}" if fmt == "onnx"
                     else f"torch.jit.trace, torch {torch.__version__}"),
        "io": {"input": exporters.INPUT_NAME, "output": exporters.OUTPUT_NAME, "dtype": "float32",
               "input_shape": ["batch", loaded.in_channels, h, w],
               "output_shape": ["batch", loaded.num_classes, h, w]},
        "class_names": loaded.class_names,
        "num_classes": loaded.num_classes,
        "preprocess": {
            "read": "Pillow; grey -> 1 channel, RGB -> 3, alpha dropped, other modes -> RGB; raw values as float32",
            "in_channels": loaded.in_channels,
            "channels": {"grey_to_rgb": "repeat", "rgb_to_grey": "ITU-R BT.601 luminance [0.299, 0.587, 0.114]"},
            "normalize": {"method": "percentile", "lower": float(norm.get("lower", 0.5)),
                          "upper": float(norm.get("upper", 99.5)), "scope": "per image, all channels jointly",
                          "percentile": "numpy linear interpolation", "then": "clip, scale to [0, 1]",
                          "constant_image": "zeros"},
            "image_size": [h, w],
            "resize": {"mode": "bilinear", "antialias": True, "align_corners": False, "clamp": [0.0, 1.0],
                       "as": "torch.nn.functional.interpolate"},
            "layout": "B,C,H,W",
        },
        "postprocess": {
            "resize_back": {"of": "logits", "mode": "bilinear", "antialias": False, "align_corners": False,
                            "to": "original image size"},
            "argmax": "over classes (axis 1), first maximum on ties",
            "mask": "uint8 class indices; predict.py writes 0/255 for one foreground class",
        },
        "source": {k: info.get(k) for k in ("network", "network_kwargs", "method", "stage", "seed", "train_dataset",
                                            "best_val_dice")},
        "check": check,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


_README = """# {name}: exported SIKD Studio model ({fmt})

Segments 2D images into {classes}. Everything between an image file and its mask is declared in
`recipe.json` ({recipe}) and implemented in `predict.py` with numpy and Pillow only.

    python -m venv venv && . venv/bin/activate
    pip install -r requirements.txt
    python predict.py image1.png image2.jpg --out masks/
    pip install pydicom highdicom   # only for DICOM: a series folder or .zip in, a DICOM SEG out
    python predict.py series_folder/ --out segs/

In Python: `import predict; model = predict.load("."); masks = model.predict([numpy_image])`.
Network alone: `{model_file}`, input `{input}` float32 `B,{c},{h},{w}` (any batch size; the image
normalised and resized as in the recipe), output `{output}` `B,{k},{h},{w}`{opset}.

Read `model_card.md` before use: training data, scores, data terms and limits.
"""


def write_bundle(model_path: str | Path, out_dir: str | Path, fmt: str = "onnx",
                 card: dict[str, Any] | None = None) -> Path:
    """Export ``model_path`` (a ``model.pt``) into ``out_dir`` (created; existing bundle files replaced).

    The exported network is checked against PyTorch on a random batch; the result goes in the recipe.
    ``card``: the model card (default: built from the bundle and its experiment folder, if any).
    """
    if fmt not in exporters.FORMATS:
        raise SIKDError(f"unknown export format {fmt!r}; formats: {', '.join(exporters.FORMATS)}")
    loaded = load_bundle(model_path, device="cpu")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_file = out / MODEL_FILES[fmt]
    if fmt == "onnx":
        exporters.export_onnx(loaded.model, model_file, loaded.in_channels, loaded.image_size)
    else:
        exporters.export_torchscript(loaded.model, model_file, loaded.in_channels, loaded.image_size)
    check = exporters.check_exported(loaded.model, model_file, fmt, loaded.in_channels, loaded.image_size)
    if check["max_abs_logit_diff"] > 1e-3:
        raise SIKDError(f"the exported model disagrees with PyTorch: max logit difference "
                        f"{check['max_abs_logit_diff']:.2e}")
    recipe = make_recipe(loaded, fmt, check)
    (out / "recipe.json").write_text(json.dumps(recipe, indent=2))
    shutil.copyfile(runtime.__file__, out / "predict.py")
    shutil.copyfile(dicom_series.__file__, out / "sikd_dicom.py")  # DICOM series in, DICOM SEG out (optional)
    (out / "requirements.txt").write_text(REQUIREMENTS[fmt])
    if card is None:
        from sikd_core.export.card import card_for_bundle

        card = card_for_bundle(model_path, info=loaded.info)
    write_card(card, out)
    h, w = loaded.image_size
    (out / "README.md").write_text(_README.format(
        name=card.get("name", "model"), fmt=fmt, classes=", ".join(loaded.class_names[1:]) or "classes",
        recipe=runtime.RECIPE, model_file=model_file.name, input=exporters.INPUT_NAME,
        output=exporters.OUTPUT_NAME, c=loaded.in_channels, k=loaded.num_classes, h=h, w=w,
        opset=f"; ONNX opset {exporters.ONNX_OPSET}" if fmt == "onnx" else ""))
    log.info("exported %s as %s to %s (max logit difference %.2e)", model_path, fmt, out,
             check["max_abs_logit_diff"])
    return out


def write_card(card: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """``model_card.json`` and ``model_card.md`` in ``out_dir``."""
    from sikd_core.export.card import render_card_markdown

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model_card.json").write_text(json.dumps(card, indent=2))
    (out / "model_card.md").write_text(render_card_markdown(card), encoding="utf-8")
    return out / "model_card.json", out / "model_card.md"


def zip_bundle(folder: str | Path, zip_path: str | Path) -> Path:
    """The bundle folder as one zip file (files at the top level of a folder named like the zip)."""
    folder, zip_path = Path(folder), Path(zip_path)
    tmp = zip_path.with_name(zip_path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for f in sorted(folder.iterdir()):
            if f.is_file():
                z.write(f, f"{zip_path.stem}/{f.name}")
    tmp.replace(zip_path)
    return zip_path
