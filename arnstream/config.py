"""Typed configuration: YAML, then ARNSTREAM_* environment variables, then flags.

Unknown keys, wrongly typed values and values out of their range (a batch size of 0, a
false-positive rate of 2) are errors that name the key. Only cli.py passes the environment in;
library code receives a finished Config.

Environment: ARNSTREAM_<SECTION>__<KEY>=value (e.g. ARNSTREAM_RUNTIME__THREADS=2), plus the
documented alias ARNSTREAM_DATA_DIR for data.dir. Values are parsed as YAML scalars.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "configs" / "default.yaml"
ENV_PREFIX = "ARNSTREAM_"
ENV_ALIASES = {"ARNSTREAM_DATA_DIR": "data.dir"}
# serve.max_record_bytes's default: flow records are ~0.5-2 kB; an alert carries its record and
# score (up to twice this), which must stay under Kafka's ~1 MB message limit
MAX_RECORD_BYTES = 256 * 1024


@dataclass
class RuntimeConfig:
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 2  # torch intra-op threads; 2 measured fastest on 2 cores (docs/results.md)


@dataclass
class DataConfig:
    dir: str | None = None  # public datasets; None = ../shared/data beside the repository


@dataclass
class ModelConfig:
    name: str = "arn-n"
    params: dict = field(default_factory=dict)  # constructor overrides for the detector


@dataclass
class TrainingConfig:
    epochs: int = 30
    batch_size: int = 1024
    target_fpr: float = 0.001  # alert threshold calibrated on held-out normal traffic
    # what models trained to alert (train, fit, the demo, retraining) score with: either (the
    # larger of D's and the reconstruction error's tail-scaled scores; the default since
    # 2026-11-30, 18:30 UTC), combined (their sum) or discriminator (the paper's p(anomaly | x),
    # bounded): docs/streaming.md "Which score alerts"
    score_mode: str = "either"
    # ARN's discriminator width in models trained to alert (null: the model's own, the paper's
    # 64): 32 scores 2.2x faster, trains 1.5x faster and detected as well in the flowsim demo
    # (netflow: docs/streaming.md "A narrower discriminator for serving"); model.params.d_width wins
    discriminator_width: int | None = 32


@dataclass
class KafkaConfig:
    client: str = "kafka-python"  # kafka-python | confluent
    bootstrap_servers: str = "127.0.0.1:9092"
    group: str = "arnstream-serve"
    session_timeout_ms: int = 10000  # a group join takes about half of this
    acks: str = "all"  # what "lose nothing" needs on a replicated cluster
    compression: str = "lz4"  # none | gzip | lz4 | zstd (zstd needs the zstandard package)
    linger_ms: int = 20
    # Security, passed through to whichever client runs (SASL/SSL). Empty = plaintext.
    security_protocol: str = "PLAINTEXT"  # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    sasl_mechanism: str | None = None  # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    # verbatim client options (names of the client in use): `extra` for every client (admin,
    # consumer, producer), the other two for one role; they override arnstream's tuning defaults
    extra: dict = field(default_factory=dict)
    consumer_extra: dict = field(default_factory=dict)
    producer_extra: dict = field(default_factory=dict)


@dataclass
class TopicsConfig:
    normal: str = "flows-normal"
    live: str = "flows-live"
    scores: str = "flows-scores"
    alerts: str = "flows-alerts"
    deadletter: str = "flows-deadletter"
    labels: str = "flows-labels"


@dataclass
class ServeConfig:
    schema: str = "flowsim"  # schema of `train --data` files and of the simulator's records
    batch_size: int = 5000  # most records per poll
    poll_timeout_ms: int = 500
    output_timeout_s: float = 15.0  # unacknowledged output after this: batch re-read, producer renewed
    metrics_address: str | None = "127.0.0.1:9108"  # host:port; 0.0.0.0:9108 in containers; null = off
    reload_interval_s: float = 5.0  # how often the registry is checked for a promoted model
    wait_for_model_s: float = 10.0  # log interval while no model is promoted yet
    top_features: int = 3  # most atypical fields reported with each score
    drift_delta: float = 0.002  # ADWIN confidence on the anomaly score
    threads: int = 1  # torch intra-op threads of serve's scorer thread: 1 beat 2 (docs/streaming.md)
    max_record_bytes: int = MAX_RECORD_BYTES  # larger input records and labels are dead letters (cut to this)


@dataclass
class RegistryConfig:
    dir: str = "registry"  # versioned model artifacts; relative paths are from the working directory


@dataclass
class FeedbackConfig:
    enabled: bool = True  # serve keeps scored records and reads analyst labels
    store: str = "feedback/store.sqlite3"  # SQLite file; replicas on one host share it
    max_age_s: float = 7 * 86400.0  # scored records older than this are evicted
    max_records: int = 500_000  # and the oldest beyond this many
    maintain_interval_s: float = 30.0  # how often eviction runs (and the retrain policy is checked)


@dataclass
class RetrainConfig:
    every_s: float | None = None  # retrain this often (null = not on a timer)
    after_labels: int | None = 50  # ... or once this many new or changed labels arrived (null = never)
    min_anomaly_labels: int = 3  # fewer labelled anomalies than this: nothing to learn, skipped
    normal_window: int = 50_000  # most recent unflagged records used as training normals
    gate_fraction: float = 0.3  # share of labels (by record id) kept out of training for the gate
    auc_tolerance: float = 0.01  # candidate AUC / AUPRC may trail the current model by this much
    fpr_tolerance: float = 0.005  # false-positive rate on declared-normal records above max(current, target)
    max_new_alert_rate: float = 0.02  # most of the recent traffic the current model let pass it may alert on
    min_alert_recall: float = 0.9  # share of the current model's recent alerts the candidate must still raise
    weak_weight: float = 5.0  # loss weight of labelled anomalies (eq. 4)
    confirmed_normal_repeat: int = 10  # analyst-confirmed normals count this many times
    epochs: int | None = None  # null = training.epochs
    warm_start: bool = False  # continue from the current model (its encoder and weights) instead of anew
    params: dict = field(default_factory=dict)  # detector overrides for retraining only, e.g. {lr_d: 1.0e-4}


@dataclass
class Config:
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    topics: TopicsConfig = field(default_factory=TopicsConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    feedback: FeedbackConfig = field(default_factory=FeedbackConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)

    def data_dir(self) -> Path:
        return Path(self.data.dir) if self.data.dir else (REPO_ROOT.parent / "shared" / "data")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _at_least(low):
    return (lambda v: v >= low), f"at least {low}"


def _above(low):
    return (lambda v: v > low), f"above {low}"


_FRACTION = (lambda v: 0 < v < 1), "between 0 and 1 (both excluded)"
_SHARE = (lambda v: 0 <= v <= 1), "between 0 and 1"

# The numbers' ranges, checked once the types are (None, where allowed, is not checked):
# a value outside them would fail later, far from its key, or quietly do nothing.
RANGES = {
    "runtime.threads": _at_least(1),
    "training.epochs": _at_least(1), "training.batch_size": _at_least(1), "training.target_fpr": _FRACTION,
    "training.discriminator_width": _at_least(4),
    "kafka.session_timeout_ms": _above(0), "kafka.linger_ms": _at_least(0),
    "serve.batch_size": _at_least(1), "serve.poll_timeout_ms": _at_least(0), "serve.output_timeout_s": _above(0),
    "serve.reload_interval_s": _above(0), "serve.wait_for_model_s": _above(0), "serve.top_features": _at_least(0),
    "serve.drift_delta": _FRACTION, "serve.threads": _at_least(1), "serve.max_record_bytes": _at_least(1024),
    "feedback.max_age_s": _above(0), "feedback.max_records": _at_least(1), "feedback.maintain_interval_s": _above(0),
    "retrain.every_s": _above(0), "retrain.after_labels": _at_least(1), "retrain.min_anomaly_labels": _at_least(1),
    "retrain.normal_window": _at_least(1), "retrain.gate_fraction": _FRACTION, "retrain.auc_tolerance": _at_least(0),
    "retrain.fpr_tolerance": _at_least(0), "retrain.max_new_alert_rate": _SHARE,
    "retrain.min_alert_recall": _SHARE, "retrain.weak_weight": _above(0),
    "retrain.confirmed_normal_repeat": _at_least(1), "retrain.epochs": _at_least(1),
}


def _check_ranges(cfg: "Config") -> None:
    for key, (within, words) in RANGES.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value is not None and not within(value):
            raise ConfigError(key, f"must be {words}, got {value!r}")


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None,
                overrides: Mapping[str, Any] | None = None) -> Config:
    """Merge defaults <- YAML file <- environment <- overrides ("section.key" -> value)."""
    merged: dict = {}
    source = Path(path) if path else DEFAULT_CONFIG
    if path or source.is_file():
        if not source.is_file():
            raise ConfigError(str(source), "config file not found")
        try:
            loaded = yaml.safe_load(source.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(str(source), f"not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(str(source), "the top level must be a mapping of sections")
        merged = loaded
    for key, value in _from_env(env or {}).items():
        _set_dotted(merged, key, value)
    for key, value in (overrides or {}).items():
        _set_dotted(merged, key, value)
    cfg = _build(Config, merged, prefix="")
    _check_ranges(cfg)
    return cfg


def parse_assignment(text: str) -> tuple[str, Any]:
    """`section.key=value` from a --set flag; the value is a YAML scalar or flow collection."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ConfigError(text, "expected KEY=VALUE, e.g. runtime.threads=2")
    try:
        return key.strip(), parse_scalar(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(key, f"cannot parse value {raw!r}: {exc}") from exc


def parse_scalar(raw: str) -> Any:
    """YAML's reading of a value, except that `1e-4` is a number (YAML 1.1 calls it text)."""
    value = yaml.safe_load(raw)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    out = {}
    for name, raw in env.items():
        if name in ENV_ALIASES:
            out[ENV_ALIASES[name]] = raw
        elif name.startswith(ENV_PREFIX) and "__" in name:
            dotted = name[len(ENV_PREFIX):].lower().replace("__", ".")
            out[dotted] = parse_scalar(raw) if raw != "" else None
    return out


def _set_dotted(target: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = target
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(dotted, f"'{part}' is not a section")
    node[parts[-1]] = value


def _build(cls, data: Any, prefix: str):
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(prefix.rstrip(".") or "<root>", f"expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}", f"unknown key (known in this section: {sorted(names)})")
    kwargs = {}
    for name, value in data.items():
        key, hint = f"{prefix}{name}", hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, f"{key}.")
        else:
            kwargs[name] = _coerce(key, hint, value)
    return cls(**kwargs)


def _coerce(key: str, hint, value: Any):
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        if type(None) in allowed:
            return None
        raise ConfigError(key, "must not be empty")
    for t in allowed:
        if t is type(None):
            continue
        origin = typing.get_origin(t) or t
        if origin is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if origin is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if origin is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        if origin in (bool, dict, list) and isinstance(value, origin):
            return value
    names = " or ".join(getattr(t, "__name__", str(t)) for t in allowed)
    raise ConfigError(key, f"expected {names}, got {value!r}")
