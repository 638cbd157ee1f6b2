"""The model registry: a directory of versioned artifacts with atomic promotion.

    <dir>/versions/v0001/      a detector artifact (models/serialization.py) + card.json, and
                               reference.jsonl.gz: declared-normal records (see add)
    <dir>/CURRENT              the promoted version's name, replaced atomically
    <dir>/history.jsonl        every promotion and rollback, one JSON object per line

Writers build a version in a temporary directory and rename it into place, so a reader
(`serve`) never sees half an artifact; promotion swaps CURRENT with os.replace.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from .errors import ArtifactError

REFERENCE_FILE = "reference.jsonl.gz"
_VERSION = re.compile(r"^v(\d{4,})$")


@dataclass(frozen=True)
class VersionInfo:
    name: str
    created: float
    card: dict

    @property
    def number(self) -> int:
        return int(self.name[1:])


class Registry:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def versions_dir(self) -> Path:
        return self.root / "versions"

    # ------------------------------------------------------------------ write
    def add(self, detector, *, encoder_state: dict, metadata: dict, card: dict,
            reference: Sequence[dict] = ()) -> str:
        """Save a fitted detector as the next version (not promoted) and return its name.

        reference: records known to be normal that the detector did not train on (a held-out
        share of a window declared normal), kept with the version so that a retrained
        candidate can be calibrated and checked on clean traffic (feedback/retrain.py).
        """
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.versions_dir))
        try:
            detector.save(staging / "artifact", encoder_state=encoder_state, metadata=metadata)
            (staging / "card.json").write_text(json.dumps({**card, "created": time.time()}, indent=1))
            if reference:
                with gzip.open(staging / REFERENCE_FILE, "wb") as fh:
                    fh.writelines(orjson.dumps(r) + b"\n" for r in reference)
            while True:  # two trainers may race for a number: the rename decides
                name = f"v{self._last_number() + 1:04d}"
                try:
                    os.rename(staging, self.versions_dir / name)
                    return name
                except OSError:
                    if not (self.versions_dir / name).exists():
                        raise
        except BaseException:
            import shutil

            shutil.rmtree(staging, ignore_errors=True)
            raise

    def promote(self, name: str, reason: str = "promote") -> None:
        self._require(name)
        previous = self.current()
        tmp = self.root / f".CURRENT.{os.getpid()}"
        tmp.write_text(name + "\n")
        os.replace(tmp, self.root / "CURRENT")
        self._log({"event": reason, "version": name, "previous": previous})

    def log_event(self, event: dict) -> None:
        """Keep a decision (e.g. a retraining's gate numbers) in the history next to promotions."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._log(event)

    def rollback(self) -> str:
        """Promote the version that was current before the present one."""
        current = self.current()
        if current is None:
            raise ArtifactError(f"{self.root}: nothing is promoted, nothing to roll back")
        stack = self._promotion_stack()
        while stack and stack[-1] == current:
            stack.pop()
        while stack and not (self.versions_dir / stack[-1]).is_dir():
            stack.pop()
        if not stack:
            raise ArtifactError(f"{self.root}: no earlier promoted version to roll back to")
        self.promote(stack[-1], reason="rollback")
        return stack[-1]

    def _promotion_stack(self) -> list[str]:
        """Promotions push a version; a rollback pops back down to the version it restored."""
        stack: list[str] = []
        for event in self.history():
            if event["event"] == "rollback":
                while stack and stack[-1] != event["version"]:
                    stack.pop()
                if not stack:
                    stack.append(event["version"])
            elif event["event"] == "promote":
                stack.append(event["version"])
        return stack

    # ------------------------------------------------------------------- read
    def current(self) -> str | None:
        try:
            name = (self.root / "CURRENT").read_text().strip()
        except FileNotFoundError:
            return None
        return name or None

    def list(self) -> list[VersionInfo]:
        if not self.versions_dir.is_dir():
            return []
        out = []
        for path in sorted(self.versions_dir.iterdir()):
            if _VERSION.match(path.name):
                try:
                    card = json.loads((path / "card.json").read_text())
                except (OSError, json.JSONDecodeError):
                    card = {}
                out.append(VersionInfo(path.name, card.get("created", 0.0), card))
        return out

    def artifact_path(self, name: str) -> Path:
        return self._require(name) / "artifact"

    def load(self, name: str):
        from .models.serialization import load_detector

        return load_detector(self.artifact_path(name))

    def reference(self, name: str) -> list[dict]:
        """The version's declared-normal reference records, in stored order ([] if it has none)."""
        path = self._require(name) / REFERENCE_FILE
        if not path.exists():
            return []
        try:
            with gzip.open(path, "rb") as fh:
                return [orjson.loads(line) for line in fh if line.strip()]
        except (OSError, EOFError, orjson.JSONDecodeError) as exc:
            raise ArtifactError(f"{path}: unreadable reference records ({exc})") from exc

    def history(self) -> list[dict]:
        try:
            lines = (self.root / "history.jsonl").read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

    # ---------------------------------------------------------------- helpers
    def _require(self, name: str) -> Path:
        path = self.versions_dir / name
        if not _VERSION.match(name) or not path.is_dir():
            known = ", ".join(v.name for v in self.list()) or "none"
            raise ArtifactError(f"{self.root}: no model version '{name}' (known: {known})")
        return path

    def _last_number(self) -> int:
        numbers = [int(m.group(1)) for p in self.versions_dir.iterdir() if (m := _VERSION.match(p.name))]
        return max(numbers, default=0)

    def _log(self, event: dict) -> None:
        with open(self.root / "history.jsonl", "a") as fh:
            fh.write(json.dumps({**event, "at": time.time()}) + "\n")


def version_number(name: str | None) -> int:
    m = _VERSION.match(name or "")
    return int(m.group(1)) if m else 0
