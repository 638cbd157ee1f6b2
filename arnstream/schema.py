"""FlowSchema: the fields of a flow record and their kinds, loaded from YAML.

Kinds: numeric (min-max scaled; with `scale: log`, of log1p of the value: for counts and byte
totals whose heavy tails would squash every ordinary value near 0), categorical (one-hot with
an unknown bucket), key (an id, never a feature), timestamp (ordering, never a feature), label
(ground truth, never a feature), attribute (read by a feature step such as the traffic
windows, never a feature itself).
A field marked `derived` is computed by the schema's feature step (`windows:`), not read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import SchemaError

KINDS = ("numeric", "categorical", "key", "timestamp", "label", "attribute")
SCALES = ("linear", "log")
SCHEMA_DIR = Path(__file__).resolve().parent.parent / "configs" / "schemas"


@dataclass(frozen=True)
class Field:
    name: str
    kind: str
    min: float | None = None  # values below are rejected as absurd
    max: float | None = None  # values above are rejected as absurd
    description: str = ""
    derived: bool = False  # computed by the schema's feature step, not read from the record
    scale: str = "linear"  # numeric only: "log" min-max scales sign(v) * log1p(|v|)

    @property
    def is_feature(self) -> bool:
        return self.kind in ("numeric", "categorical")


@dataclass(frozen=True)
class FlowSchema:
    name: str
    fields: tuple[Field, ...]
    normal_labels: tuple[str, ...] = field(default=())
    windows: dict | None = None  # traffic-window settings (features/windows.py), or None

    def __post_init__(self):
        names = [f.name for f in self.fields]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise SchemaError(f"schema '{self.name}': duplicate field(s) {sorted(dupes)}")
        if not self.feature_fields:
            raise SchemaError(f"schema '{self.name}': no numeric or categorical field")

    @property
    def feature_fields(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.is_feature)

    @property
    def numeric(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.kind == "numeric")

    @property
    def categorical(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.kind == "categorical")

    def of_kind(self, kind: str) -> Field | None:
        return next((f for f in self.fields if f.kind == kind), None)

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise SchemaError(f"schema '{self.name}' has no field '{name}'")

    def to_dict(self) -> dict:
        out = {"name": self.name, "fields": []}
        for f in self.fields:
            d = {"name": f.name, "kind": f.kind}
            if f.min is not None:
                d["min"] = f.min
            if f.max is not None:
                d["max"] = f.max
            if f.description:
                d["description"] = f.description
            if f.derived:
                d["derived"] = True
            if f.scale != "linear":
                d["scale"] = f.scale
            out["fields"].append(d)
        if self.normal_labels:
            out["normal_labels"] = list(self.normal_labels)
        if self.windows is not None:
            out["windows"] = dict(self.windows)
        return out

    @classmethod
    def from_dict(cls, data: dict, source: str = "<dict>") -> "FlowSchema":
        if not isinstance(data, dict):
            raise SchemaError(f"{source}: a schema is a mapping with 'name' and 'fields'")
        unknown = set(data) - {"name", "fields", "normal_labels", "description", "windows"}
        if unknown:
            raise SchemaError(f"{source}: unknown key(s) {sorted(unknown)}")
        if "name" not in data or "fields" not in data:
            raise SchemaError(f"{source}: 'name' and 'fields' are required")
        fields = []
        for i, raw in enumerate(data["fields"] or []):
            where = f"{source}: fields[{i}]"
            if not isinstance(raw, dict) or "name" not in raw or "kind" not in raw:
                raise SchemaError(f"{where}: each field needs 'name' and 'kind'")
            extra = set(raw) - {"name", "kind", "min", "max", "description", "derived", "scale"}
            if extra:
                raise SchemaError(f"{where} ('{raw['name']}'): unknown key(s) {sorted(extra)}")
            if raw["kind"] not in KINDS:
                raise SchemaError(
                    f"{where} ('{raw['name']}'): kind '{raw['kind']}' is not one of {KINDS}"
                )
            scale = raw.get("scale", "linear")
            if scale not in SCALES:
                raise SchemaError(f"{where} ('{raw['name']}'): scale '{scale}' is not one of {SCALES}")
            if scale != "linear" and raw["kind"] != "numeric":
                raise SchemaError(f"{where} ('{raw['name']}'): scale applies to numeric fields only")
            fields.append(
                Field(
                    name=str(raw["name"]),
                    kind=raw["kind"],
                    min=None if raw.get("min") is None else float(raw["min"]),
                    max=None if raw.get("max") is None else float(raw["max"]),
                    description=str(raw.get("description", "")),
                    derived=bool(raw.get("derived", False)),
                    scale=scale,
                )
            )
        return cls(
            name=str(data["name"]),
            fields=tuple(fields),
            normal_labels=tuple(str(v) for v in data.get("normal_labels", ()) or ()),
            windows=_windows(data.get("windows"), source),
        )

    @classmethod
    def load(cls, name_or_path: str | Path) -> "FlowSchema":
        """Load a schema by file path or by name from configs/schemas/."""
        path = Path(name_or_path)
        if not path.suffix:
            path = SCHEMA_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in SCHEMA_DIR.glob("*.yaml"))
            raise SchemaError(f"schema '{name_or_path}' not found (looked at {path}; known: {known})")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise SchemaError(f"{path}: not valid YAML: {exc}") from exc
        return cls.from_dict(data, source=str(path))

    @classmethod
    def all_numeric(cls, name: str, columns: list[str], label: str | None = None) -> "FlowSchema":
        """A schema for purely numeric data (MNIST, .npz arrays, CSV with a label column)."""
        fields = [Field(c, "numeric") for c in columns]
        if label is not None:
            fields.append(Field(label, "label"))
        return cls(name=name, fields=tuple(fields))


def _windows(raw, source: str) -> dict | None:
    if raw is None:
        return None
    known = {"seconds": float, "connections": int, "max_keys": int, "max_ahead_s": float}
    if not isinstance(raw, dict) or set(raw) - set(known):
        raise SchemaError(f"{source}: windows takes {sorted(known)}, got {raw!r}")
    out = {}
    for key, kind in known.items():
        if key in raw:
            value = raw[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise SchemaError(f"{source}: windows.{key} must be a positive number, got {value!r}")
            out[key] = kind(value)
    return out
