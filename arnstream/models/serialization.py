"""Detector artifacts: a directory with an envelope, never a pickle.

    weights.safetensors  every array of the fitted state
    detector.json        detector name, constructor arguments, JSON state, threshold,
                         encoder state and schema (when given), library versions, metadata
    checksums.json       sha256 of both files; loading verifies them before parsing

Loading rebuilds the detector from its constructor arguments, then restores the state.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ArtifactError
from .base import Detector

FORMAT_VERSION = 1
WEIGHTS = "weights.safetensors"
ENVELOPE = "detector.json"
CHECKSUMS = "checksums.json"


@dataclass
class LoadedArtifact:
    detector: Detector
    encoder_state: dict | None
    metadata: dict


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _versions() -> dict:
    import safetensors
    import torch

    from .. import __version__

    return {"arnstream": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "safetensors": safetensors.__version__, "python": platform.python_version()}


def save_detector(detector: Detector, path: Path, *, encoder_state: dict | None = None,
                  metadata: dict | None = None) -> Path:
    """Write the artifact into `path` (created; replaced atomically if it exists)."""
    from safetensors.numpy import save_file

    from . import registry_name

    arrays, state = detector._get_state()
    envelope = {
        "format": FORMAT_VERSION,
        "detector": registry_name(detector),
        "params": detector.get_params(),
        "state": state,
        "n_features_in": detector.n_features_in_,
        "feature_groups": [list(g) for g in detector.feature_groups_],
        "threshold": getattr(detector, "threshold_", None),
        "threshold_fpr": getattr(detector, "threshold_fpr_", None),
        "encoder": encoder_state,
        "metadata": metadata or {},
        "versions": _versions(),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp / WEIGHTS))
        (tmp / ENVELOPE).write_text(json.dumps(envelope, indent=1, sort_keys=True))
        sums = {name: _sha256(tmp / name) for name in (WEIGHTS, ENVELOPE)}
        (tmp / CHECKSUMS).write_text(json.dumps(sums, indent=1))
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            os.replace(path, old)
            os.replace(tmp, path)
            _rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        _rmtree(tmp)
        raise
    return path


def load_detector(path: Path) -> LoadedArtifact:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    from . import detector_class

    path = Path(path)
    if not (path / CHECKSUMS).is_file():
        raise ArtifactError(f"{path}: not a detector artifact ({CHECKSUMS} missing)")
    try:
        sums = json.loads((path / CHECKSUMS).read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path / CHECKSUMS}: corrupt ({exc})") from exc
    for name in (WEIGHTS, ENVELOPE):
        file = path / name
        if not file.is_file():
            raise ArtifactError(f"{file}: missing from the artifact")
        if _sha256(file) != sums.get(name):
            raise ArtifactError(f"{file}: sha256 mismatch: the file was modified or corrupted; refusing to load")
    envelope = json.loads((path / ENVELOPE).read_text())
    if envelope.get("format") != FORMAT_VERSION:
        raise ArtifactError(f"{path}: artifact format {envelope.get('format')} is not supported")
    try:
        arrays = load_file(str(path / WEIGHTS))
    except (SafetensorError, OSError) as exc:
        raise ArtifactError(f"{path / WEIGHTS}: unreadable ({exc})") from exc
    cls = detector_class(envelope["detector"])
    detector = cls(**cls.params_from_artifact(dict(envelope["params"])))
    detector.n_features_in_ = int(envelope["n_features_in"])
    detector.feature_groups_ = tuple(tuple(g) for g in envelope["feature_groups"])
    if envelope.get("threshold") is not None:
        detector.threshold_ = float(envelope["threshold"])
        detector.threshold_fpr_ = envelope.get("threshold_fpr")
    detector._set_state(arrays, envelope["state"])
    return LoadedArtifact(detector, envelope.get("encoder"), envelope.get("metadata", {}))


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
