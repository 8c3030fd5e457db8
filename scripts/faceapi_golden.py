"""Goldens for the PyTorch port of face-api's expression network, from face-api's own code on TF.js.

Source of the network and weights: face-api.js by Vincent Mühler (MIT), npm ``@vladmandic/face-api@1.7.15``
(MIT). This driver cuts real face crops out of the photos the course already fetches
(:func:`fer_utils.assets.load_photo`; boxes from :mod:`fer_utils.faces` or fixed below), writes each crop
(uint8 RGB) and our preprocessed input (:func:`fer_utils.weights.faceapi_preprocess`) to a temporary
folder, runs ``scripts/faceapi_golden.mjs`` with Node.js and writes ``tests/data/faceapi_golden.json``:
per crop the photo, box, SHA-256 of the crop and of our preprocessed input, and face-api's probabilities
(its class order), plus the tfjs version. Node packages go into a cache folder, never the repository.

Usage (from the repository root)::

    python scripts/faceapi_golden.py install    # npm install into the cache folder (about 300 MB)
    python scripts/faceapi_golden.py generate   # run node, compare with PyTorch, write the goldens
    python scripts/faceapi_golden.py check      # run node and compare, write nothing

Needs the assets (``python -m fer_utils.assets fetch-all``), ``node`` (18+) and ``npm`` on PATH.
``FER_FACEAPI_NODE_PREFIX`` moves the npm folder (default ``<cache_dir>/node/faceapi-1.7.15-tfjs-4.22.0``).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from fer_utils.assets import fetch, load_lfw_subset, load_photo, sha256_of
from fer_utils.models.faceapi import FACEAPI_CLASSES
from fer_utils.utils import cache_dir
from fer_utils.weights import FACEAPI_BIN, FACEAPI_MANIFEST, faceapi_preprocess, load_faceapi

ROOT = Path(__file__).resolve().parents[1]
NODE_SCRIPT = ROOT / "scripts" / "faceapi_golden.mjs"
GOLDEN = ROOT / "tests" / "data" / "faceapi_golden.json"
FACEAPI_VERSION = "1.7.15"
TFJS_VERSION = "4.22.0"  # the tfjs that face-api 1.7.15's dist was built against (dist/tfjs.version.js)
NPM_PACKAGES = (f"@tensorflow/tfjs@{TFJS_VERSION}",
                f"@tensorflow/tfjs-node@npm:@tensorflow/tfjs@{TFJS_VERSION}",  # pure-JS stand-in, see the .mjs
                f"@vladmandic/face-api@{FACEAPI_VERSION}")
#: The crops: (photo, how the box is found). A box is (x, y, width, height) in pixels.
CROPS: tuple[tuple[str, str | tuple[int, int, int, int]], ...] = (
    ("grace_hopper.jpg", "mtcnn"),
    ("astronaut.png", "mtcnn"),
    ("astronaut.png", "haar"),                     # square: resized without padding
    ("grace_hopper.jpg", (209, 174, 112, 112)),    # exactly 112x112: no padding, no resize
    ("astronaut.png", (150, 60, 161, 120)),        # wider than high, odd difference: rows padded 20 / 21
    ("lfw_subset.npy#0", (0, 0, 25, 25)),          # scikit-image's LFW face 0, grey 25x25, upscaled
)


def node_prefix() -> Path:
    """The npm folder holding tfjs and face-api: ``$FER_FACEAPI_NODE_PREFIX`` or under the course cache."""
    override = os.environ.get("FER_FACEAPI_NODE_PREFIX")
    if override:
        return Path(override).expanduser()
    return cache_dir() / "node" / f"faceapi-{FACEAPI_VERSION}-tfjs-{TFJS_VERSION}"


def install(prefix: Path | None = None) -> Path:
    """``npm install --prefix <prefix>`` of :data:`NPM_PACKAGES` (no install scripts run)."""
    prefix = prefix or node_prefix()
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("`npm` (Node.js's package manager) is not on PATH: install Node.js 18+ with npm")
    prefix.mkdir(parents=True, exist_ok=True)
    cmd = [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--ignore-scripts",
           "--save-exact", *NPM_PACKAGES]
    subprocess.run(cmd, check=True)
    return prefix


def node_missing(prefix: Path | None = None) -> str | None:
    """Why the Node side cannot run (no ``node``, packages not installed), or ``None`` when it can."""
    prefix = prefix or node_prefix()
    if shutil.which("node") is None:
        return "`node` is not on PATH"
    for package in ("@tensorflow/tfjs", "@tensorflow/tfjs-node", "@vladmandic/face-api"):
        if not (prefix / "node_modules" / package / "package.json").is_file():
            return f"{package} is not installed in {prefix} (run: python scripts/faceapi_golden.py install)"
    return None


def load_crop(photo: str, box: tuple[int, int, int, int]) -> np.ndarray:
    """``image[y:y+h, x:x+w]`` of a cached photo as uint8 RGB; ``lfw_subset.npy#i`` is LFW face ``i`` (grey x3)."""
    if photo.startswith("lfw_subset.npy#"):
        faces, _ = load_lfw_subset()
        grey = np.round(faces[int(photo.split("#")[1])] * 255).astype(np.uint8)
        image = np.repeat(grey[:, :, None], 3, axis=2)
    else:
        image = load_photo(photo)
    x, y, w, h = box
    if x < 0 or y < 0 or x + w > image.shape[1] or y + h > image.shape[0]:
        raise ValueError(f"box {box} lies outside {photo} ({image.shape[1]}x{image.shape[0]})")
    return np.ascontiguousarray(image[y:y + h, x:x + w])


def detector_box(photo: str, method: str) -> tuple[int, int, int, int]:
    """The largest face's box as integers, clipped and floored as face-api's ``extractFaceTensors`` does."""
    from fer_utils.faces import detect_one

    image = load_photo(photo)
    x0, y0, x1, y1 = detect_one(image, photo, method).box
    x, y = int(np.floor(max(x0, 0))), int(np.floor(max(y0, 0)))
    return x, y, int(np.floor(min(x1, image.shape[1]) - x)), int(np.floor(min(y1, image.shape[0]) - y))


def sha256_bytes(array: np.ndarray) -> str:
    """SHA-256 of an array's bytes in C order."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def run_node(crops: list[np.ndarray], prefix: Path | None = None) -> tuple[dict, list[np.ndarray]]:
    """Run the .mjs on the crops: (its JSON output, face-api's preprocessed inputs as (3, 112, 112) arrays)."""
    prefix = prefix or node_prefix()
    with tempfile.TemporaryDirectory(prefix="faceapi_golden_") as tmp:
        folder, items = Path(tmp), []
        for i, crop in enumerate(crops):
            (folder / f"{i}.crop.u8").write_bytes(np.ascontiguousarray(crop, dtype=np.uint8).tobytes())
            hwc = faceapi_preprocess(crop).transpose(1, 2, 0)
            (folder / f"{i}.input.f32").write_bytes(np.ascontiguousarray(hwc, dtype="<f4").tobytes())
            items.append({"id": str(i), "height": crop.shape[0], "width": crop.shape[1],
                          "crop": f"{i}.crop.u8", "input": f"{i}.input.f32"})
        (folder / "inputs.json").write_text(json.dumps({"items": items}))
        cmd = ["node", str(NODE_SCRIPT), "--prefix", str(prefix), "--manifest", str(fetch(FACEAPI_MANIFEST)),
               "--bin", str(fetch(FACEAPI_BIN)), "--inputs", str(folder), "--out", str(folder / "out.json")]
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{run.stdout}\n{run.stderr}")
        out = json.loads((folder / "out.json").read_text())
        pre = [np.fromfile(folder / r["preprocessed"], dtype="<f4").reshape(112, 112, 3).transpose(2, 0, 1)
               for r in out["results"]]
    return out, pre


def torch_logits(inputs: list[np.ndarray]) -> np.ndarray:
    """Our network's logits on preprocessed (3, 112, 112) inputs: (n, 7) float64, face-api's order."""
    model = load_faceapi()
    with torch.no_grad():
        return model(torch.from_numpy(np.stack(inputs))).double().numpy()


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64."""
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _crop_table() -> list[dict]:
    """Photo, box and where the box came from, for each entry of :data:`CROPS`."""
    rows = []
    for photo, how in CROPS:
        box = detector_box(photo, how) if isinstance(how, str) else how
        rows.append({"photo": photo, "box_xywh": list(box), "box_from": how if isinstance(how, str) else "fixed"})
    return rows


def compare(rows: list[dict]) -> tuple[dict, list[dict]]:
    """Run node and PyTorch on the crops of ``rows``; the node output and one record per crop."""
    crops = [load_crop(r["photo"], tuple(r["box_xywh"])) for r in rows]
    inputs = [faceapi_preprocess(c) for c in crops]
    out, faceapi_inputs = run_node(crops)
    our_logits = torch_logits(inputs)
    records = []
    for row, crop, x, fx, logits, res in zip(rows, crops, inputs, faceapi_inputs, our_logits, out["results"]):
        golden = np.asarray(res["probabilities"], dtype=np.float64)
        records.append({
            **row, "crop_shape": list(crop.shape), "crop_sha256": sha256_bytes(crop),
            "input_sha256": sha256_bytes(x),
            "probabilities": [float(v) for v in golden],
            "logits": [float(v) for v in res["logits"]],
            "probabilities_from_input": [float(v) for v in res["probabilities_from_input"]],
            "top": FACEAPI_CLASSES[int(golden.argmax())],
            "check_preprocess_max_abs": float(np.abs(fx - x).max()),
            "check_wiring_max_abs": float(res["wiring_check_max_abs"]),
            "check_torch_max_abs": float(np.abs(softmax(logits) - golden).max()),
            "check_torch_logits_max_abs": float(np.abs(logits - np.asarray(res["logits"])).max()),
        })
    return out, records


def golden_document(out: dict, records: list[dict]) -> dict:
    """The JSON written to :data:`GOLDEN`."""
    return {
        "what": "face-api FaceExpressionNet probabilities on real face crops, computed by face-api's own code "
                "(dist/face-api.node.js) on TF.js's pure-JS CPU backend; regenerate with "
                "`python scripts/faceapi_golden.py generate`",
        "source": f"@vladmandic/face-api@{FACEAPI_VERSION} (MIT); face-api.js by Vincent Mühler (MIT)",
        "classes": list(FACEAPI_CLASSES),
        "tfjs_version": out["tfjs_version"], "tfjs_core_version": out["tfjs_core_version"],
        "tfjs_backend": out["tfjs_backend"], "faceapi_version": out["faceapi_version"],
        "node_version": out["node_version"],
        "weights_sha256": {FACEAPI_MANIFEST: sha256_of(fetch(FACEAPI_MANIFEST)), FACEAPI_BIN: sha256_of(fetch(FACEAPI_BIN))},
        "input_sha256_of": "fer_utils.weights.faceapi_preprocess(crop).tobytes(): float32 (3, 112, 112), C order",
        "crop_sha256_of": "the crop image[y:y+h, x:x+w] as uint8 (h, w, 3) RGB, C order",
        "crops": records,
    }


def main(argv: list[str] | None = None) -> int:
    """``install``, ``generate`` or ``check``; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["install", "generate", "check"])
    args = parser.parse_args(argv)
    if args.command == "install":
        print(f"installed into {install()}")
        return 0
    reason = node_missing()
    if reason:
        print(f"cannot run the Node side: {reason}", file=sys.stderr)
        return 1
    rows = _crop_table() if args.command == "generate" else json.loads(GOLDEN.read_text())["crops"]
    out, records = compare(rows)
    worst = 0.0
    for r in records:
        worst = max(worst, r["check_torch_max_abs"])
        print(f"{r['photo']:18s} {str(r['box_xywh']):22s} top {r['top']:9s} torch-vs-tfjs {r['check_torch_max_abs']:.2e} "
              f"(logits {r['check_torch_logits_max_abs']:.2e}) "
              f"preprocess {r['check_preprocess_max_abs']:.2e} wiring {r['check_wiring_max_abs']:.2e}")
    print(f"tfjs {out['tfjs_version']} ({out['tfjs_backend']}), face-api {out['faceapi_version']}; worst {worst:.2e}")
    if args.command == "generate":
        GOLDEN.write_text(json.dumps(golden_document(out, records), indent=1) + "\n")
        print(f"wrote {GOLDEN.relative_to(ROOT)}")
    return 0 if worst <= 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
