"""TorchDetector: the shared wrapper for detectors whose model is an `nn.Module`.

A subclass implements `build_module`, `configure`, `training_step` and `score_batch`;
this class owns devices, seeding, the call into the training loop, batched scoring in eval
mode and (de)serialisation of the module's weights.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable

import numpy as np
import torch

from ..errors import ModelError
from .base import Detector
from .training import EpochRecord, StepContext, run_training

log = logging.getLogger(__name__)

# Rows per forward pass when scoring. On CPU a chunk's activations should stay in the core's
# cache: the 4x64 discriminator scored 50,000 rows 1.56x faster in chunks of 1,024 than of
# 8,192 (one thread, 6.4 vs 10.0 us per row); a GPU wants large batches.
SCORE_BATCH = {"cpu": 1024, "cuda": 8192}


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device '{device}' requested but CUDA is not available here")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise ModelError(f"unknown device '{device}'") from exc


class TorchDetector(Detector):
    # set by subclasses' constructors
    epochs: int
    batch_size: int
    seed: int
    device: str

    # progress callback for the CLI: called with each EpochRecord; not a hyper-parameter
    progress: Callable[[EpochRecord], None] | None = None
    # continue from the fitted module on the next fit (feedback retraining); not a hyper-parameter
    warm_start: bool = False
    # constructor arguments that shape the module's weights: a warm start keeps the fitted ones
    shape_params: tuple[str, ...] = ()

    # ------------------------------------------------------------ subclass API
    def build_module(self, n_features: int) -> torch.nn.Module:
        raise NotImplementedError

    def configure(self, module: torch.nn.Module) -> None:
        """Create optimisers and any other per-fit state."""

    def training_step(self, batch: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def score_batch(self, batch: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def epoch_evaluation(self, epoch: int) -> dict[str, float]:
        return {}

    def after_epoch(self, record: EpochRecord) -> bool | None:
        """Hook after each epoch (checkpoint choice, early stop); True stops training."""
        return None

    def step_extra(self, X: np.ndarray, y) -> dict:
        return {}

    # -------------------------------------------------------------- machinery
    def _start_training(self, n_features: int, feature_groups=()) -> None:
        """What every fit starts from: seeded RNGs, a fresh module, its optimisers."""
        keep = (self.warm_start and getattr(self, "module_", None) is not None
                and self.n_features_in_ == n_features)
        self.n_features_in_ = n_features
        self.feature_groups_ = tuple(tuple(g) for g in feature_groups)
        self.device_ = resolve_device(self.device)
        torch.manual_seed(self.seed)
        np.random.seed(self.seed % (2**32))
        if keep:
            self.module_ = self.module_.to(self.device_)
        else:
            self.module_ = self.build_module(n_features).to(self.device_)
        self._X_val = self._y_val = None
        self.configure(self.module_)
        self.module_.train()

    def _fit(self, X, y, X_val, y_val) -> None:
        normal = X if y is None else X[y != 1]
        if len(normal) < 2:
            raise ModelError("need at least two normal rows to train")
        self._start_training(X.shape[1], self.feature_groups_)
        self._X_val = None if X_val is None else torch.as_tensor(X_val, device=self.device_)
        self._y_val = y_val
        history = run_training(
            self.training_step,
            torch.as_tensor(normal, device=self.device_),
            epochs=self.epochs,
            batch_size=self.batch_size,
            seed=self.seed,
            extra=self.step_extra(X, y),
            evaluate=self.epoch_evaluation,
            on_epoch_end=self._on_epoch_end,
        )
        self.history_ = [r.as_dict() for r in history]
        self.module_.eval()
        self._X_val = self._y_val = None

    def _on_epoch_end(self, record: EpochRecord):
        stop = self.after_epoch(record)
        if self.progress is not None:
            self.progress(record)
        return stop

    @torch.no_grad()
    def _map_batches(self, fn, X: np.ndarray) -> list:
        """fn over X in eval mode, SCORE_BATCH rows at a time; one result per batch."""
        self.module_.eval()
        step = self._score_chunk()
        return [fn(torch.as_tensor(X[start : start + step], device=self.device_))
                for start in range(0, len(X), step)]

    def _score_chunk(self) -> int:
        return SCORE_BATCH.get(self.device_.type, SCORE_BATCH["cuda"])

    def _score(self, X: np.ndarray) -> np.ndarray:
        out = [b.float().cpu().numpy() for b in self._map_batches(self.score_batch, X)]
        return np.concatenate(out) if out else np.zeros(0)

    def serving_scorer(self) -> Callable[[np.ndarray], np.ndarray]:
        """`score` as one frozen TorchScript graph (the traced model in a scripted chunk loop):
        the same numbers (tests compare), but the graph runs from end to end without Python's
        GIL. Eager torch takes the GIL back between ops, so a thread scoring beside busy Python
        crawls: measured here, a 5,000-row batch of the 4x64 discriminator ran 1.1 times a second
        eager against 11.5 traced while the main thread decoded. Serve scores each batch that way
        while writing the last one."""
        self._check_fitted()
        self.module_.eval()
        example = torch.zeros(2, self.n_features_in_, device=self.device_)
        try:
            with torch.no_grad(), warnings.catch_warnings():
                # torch 2.13 marks TorchScript deprecated; pyproject caps torch at 2.13, and its
                # successors (torch.compile, torch.export) run op by op under the GIL
                warnings.simplefilter("ignore", DeprecationWarning)
                traced = torch.jit.trace(_ScoreBatch(self).eval(), example, check_trace=False)
                graph = torch.jit.freeze(torch.jit.script(_InChunks(traced, self._score_chunk()).eval()))
        except (AttributeError, RuntimeError) as exc:
            log.warning("cannot trace %s for serving (%s); scoring eagerly", type(self).__name__, exc)
            return self.score

        def score(X) -> np.ndarray:
            X = self._check_matrix(X, "X", n_features=self.n_features_in_)
            if not len(X):
                return np.zeros(0)
            with torch.no_grad():
                out = graph(torch.as_tensor(X, device=self.device_))
            return out.double().cpu().numpy()

        return score

    def _get_state(self):
        arrays = {k: v.detach().cpu().numpy() for k, v in self.module_.state_dict().items()}
        return arrays, {"history": getattr(self, "history_", [])}

    def _set_state(self, arrays, meta) -> None:
        self.device_ = resolve_device(self.device if self.device != "auto" else "cpu")
        self.module_ = self.build_module(self.n_features_in_).to(self.device_)
        state = {k: torch.as_tensor(v) for k, v in arrays.items()}
        missing, unexpected = self.module_.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ModelError(f"weights do not fit the architecture: missing {missing}, unexpected {unexpected}")
        self.module_.eval()
        self.history_ = meta.get("history", [])


class _InChunks(torch.nn.Module):
    """The traced scorer over a whole batch, SCORE_BATCH rows at a time, inside TorchScript.

    Why: a thread takes the GIL back at every return to Python, and beside a busy main thread
    each take waits up to the switch interval (5 ms). One call per batch, not one per chunk
    plus the conversions between them: serve's scorer spent about half its wall time so."""

    def __init__(self, traced: torch.nn.Module, step: int):
        super().__init__()
        self.traced = traced
        self.step = step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.traced(chunk).float() for chunk in torch.split(x, self.step)])


class _ScoreBatch(torch.nn.Module):
    """`detector.score_batch` as a module, so tracing sees the weights as parameters."""

    def __init__(self, detector: TorchDetector):
        super().__init__()
        self.inner = detector.module_
        self._score_batch = detector.score_batch

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self._score_batch(batch)
