"""Plain autoencoder baseline: trained to reconstruct normals, scored by reconstruction error."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ModelError
from ..layers import PackedDropout, adam
from ..torch_detector import TorchDetector
from ..training import StepContext


class AutoEncoderModule(nn.Module):
    def __init__(self, n_features: int, hidden: int, latent_dim: int, dropout: float):
        super().__init__()
        h = hidden
        self.net = nn.Sequential(
            nn.Linear(n_features, 2 * h), nn.LayerNorm(2 * h), nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(2 * h, h), nn.LayerNorm(h), nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(h, latent_dim),
            nn.Linear(latent_dim, h), nn.ReLU(inplace=True),
            nn.Linear(h, 2 * h), nn.LayerNorm(2 * h), nn.ReLU(inplace=True), PackedDropout(dropout),
            nn.Linear(2 * h, n_features),
        )

    def forward(self, x):
        return self.net(x)


class AutoEncoder(TorchDetector):
    name = "ae"
    shape_params = ("hidden", "latent_dim")

    def __init__(self, hidden: int = 32, latent_dim: int = 16, dropout: float = 0.0,
                 epochs: int = 30, batch_size: int = 1024, lr: float = 1e-3, seed: int = 0,
                 device: str = "auto"):
        self.hidden = hidden
        self.latent_dim = latent_dim
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.seed = seed
        self.device = device
        if not 0.0 <= dropout < 1.0:
            raise ModelError(f"ae dropout must be in [0, 1), got {dropout!r}")

    @classmethod
    def _unit_test_params(cls):
        return {"epochs": 5, "batch_size": 128, "device": "cpu"}

    def build_module(self, n_features: int) -> nn.Module:
        return AutoEncoderModule(n_features, self.hidden, self.latent_dim, self.dropout)

    def configure(self, module: nn.Module) -> None:
        self._opt = adam(module.parameters(), self.lr)

    def training_step(self, x: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        loss = F.mse_loss(self.module_(x), x)
        self._opt.zero_grad(set_to_none=True)
        loss.backward()
        self._opt.step()
        return {"rec": loss}

    def score_batch(self, batch: torch.Tensor) -> torch.Tensor:
        return (self.module_(batch) - batch).pow(2).mean(dim=1)
