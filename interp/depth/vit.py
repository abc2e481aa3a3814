"""A small pre-LN Vision Transformer with LayerScale, trained on scikit-learn's 8x8 digits.

It is the laboratory model of the depth analyses: deep enough (12 blocks by default) to show
phases, small enough to train on one CPU core (690 steps: under a minute on an idle core, several
minutes on a loaded machine), and trainable with or without stochastic depth, so the claim of
Jacobs et al. 2025 that stochastic depth promotes block-recurrent structure can be checked at
small scale. The digits ship with scikit-learn (no
download). Trained weights are cached under ``$INTERP_CACHE/depth`` (default ~/.cache/interp).

Training is seeded and runs on one thread, so it is bit-reproducible on one machine (a retrained
model equals the cached one exactly). On another machine the float kernels may round differently,
so a model trained there can differ slightly: the same head accuracy, but e.g. a linear probe that
classifies one more or one fewer of the 360 test digits (0.9528 vs 0.9500 for drop-path 0.3).
Numbers that must agree should come from the same cached weights.

Block (as in DINOv2 / the paper's Raptor block)::

    x <- x + DropPath(LS1(Attn(LN1 x)));   x <- x + DropPath(LS2(MLP(LN2 x)))
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from interp.results import write_atomically


@dataclasses.dataclass(frozen=True)
class ViTConfig:
    """Shape and training recipe of a digits ViT (all of it goes into the cache key)."""

    depth: int = 12
    dim: int = 48
    heads: int = 3
    mlp_ratio: float = 2.0
    patch: int = 2
    layerscale: float = 0.1
    drop_path: float = 0.0
    epochs: int = 30
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    seed: int = 0


class Attention(nn.Module):
    """Multi-head self-attention (no mask; every token sees every token)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(x).view(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(n, t, d))


class Block(nn.Module):
    """Pre-LN transformer block with LayerScale and stochastic depth (drop-path)."""

    def __init__(
        self, dim: int, heads: int, mlp_ratio: float, layerscale: float, drop_path: float
    ) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.ls1 = nn.Parameter(torch.full((dim,), layerscale))
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.ls2 = nn.Parameter(torch.full((dim,), layerscale))
        self.drop_path = drop_path

    def attn_branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.ls1 * self.attn(self.norm1(x))

    def mlp_branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.ls2 * self.mlp(self.norm2(x))

    def _drop(self, update: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_path == 0.0:
            return update
        keep = 1.0 - self.drop_path
        mask = torch.rand(update.shape[0], 1, 1, device=update.device) < keep
        return update * mask / keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self._drop(self.attn_branch(x))
        return x + self._drop(self.mlp_branch(x))


class PatchEmbed(nn.Module):
    """8x8 image -> CLS token + (8/p)^2 linear patch embeddings + learned positions."""

    def __init__(self, dim: int, patch: int, size: int = 8) -> None:
        super().__init__()
        if size % patch:
            raise ValueError(f"patch {patch} must divide the image size {size}")
        self.patch = patch
        self.proj = nn.Linear(patch * patch, dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(0.02 * torch.randn(1, 1 + (size // patch) ** 2, dim))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim == 4 and images.shape[1] == 1:
            images = images[:, 0]
        if images.ndim != 3:
            raise ValueError(
                f"digits images must be [N, 8, 8] or [N, 1, 8, 8], got {tuple(images.shape)}"
            )
        n, h, w = images.shape
        p = self.patch
        patches = (
            images.reshape(n, h // p, p, w // p, p).permute(0, 1, 3, 2, 4).reshape(n, -1, p * p)
        )
        tokens = torch.cat([self.cls.expand(n, -1, -1), self.proj(patches)], dim=1)
        return tokens + self.pos


class DigitsViT(nn.Module):
    """Pre-LN ViT for 8x8 digits: ``embed`` -> ``blocks`` -> ``norm`` -> ``head`` (on CLS)."""

    def __init__(self, config: ViTConfig = ViTConfig(), n_classes: int = 10) -> None:
        super().__init__()
        self.config = config
        self.embed = PatchEmbed(config.dim, config.patch)
        rates = torch.linspace(0.0, config.drop_path, config.depth).tolist()
        self.blocks = nn.ModuleList(
            Block(config.dim, config.heads, config.mlp_ratio, config.layerscale, rate)
            for rate in rates
        )
        self.norm = nn.LayerNorm(config.dim)
        self.head = nn.Linear(config.dim, n_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Final normalized tokens [N, T, D]."""
        x = self.embed(images)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images)[:, 0])


def load_digits(seed: int = 0, test_fraction: float = 0.2) -> dict[str, torch.Tensor]:
    """scikit-learn's digits as float images in [0, 1]: train/test images [N, 8, 8] and labels."""
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    data = sk_digits()
    images = torch.tensor(data.images, dtype=torch.float32) / 16.0
    labels = torch.tensor(data.target, dtype=torch.long)
    train, test = train_test_split(
        torch.arange(len(labels)).numpy(),
        test_size=test_fraction,
        random_state=seed,
        stratify=labels.numpy(),
    )
    return {
        "train_images": images[train],
        "train_labels": labels[train],
        "test_images": images[test],
        "test_labels": labels[test],
    }


def _augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random shifts of up to one pixel (zero padding)."""
    padded = F.pad(images, (1, 1, 1, 1))
    dy, dx = torch.randint(0, 3, (2,), generator=generator).tolist()
    return padded[:, dy : dy + 8, dx : dx + 8]


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread inside the block: tiny models train fastest that way, and several
    threads on a shared machine slow each other down by an order of magnitude."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_digits_vit(
    config: ViTConfig = ViTConfig(), *, verbose: bool = False
) -> tuple[DigitsViT, dict]:
    """Train a digits ViT from scratch (on one thread); returns the model (eval mode) and a log."""
    with single_thread():
        return _train(config, verbose)


def _train(config: ViTConfig, verbose: bool) -> tuple[DigitsViT, dict]:
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    data = load_digits(config.seed)
    model = DigitsViT(config)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    n = len(data["train_labels"])
    steps = config.epochs * math.ceil(n / config.batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / 50) * 0.5 * (1 + math.cos(math.pi * s / steps))
    )
    start = time.perf_counter()
    model.train()
    for epoch in range(config.epochs):
        order = torch.randperm(n, generator=generator)
        for begin in range(0, n, config.batch_size):
            idx = order[begin : begin + config.batch_size]
            images = _augment(data["train_images"][idx], generator)
            loss = F.cross_entropy(model(images), data["train_labels"][idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        if verbose:
            print(f"epoch {epoch + 1}/{config.epochs} loss {loss.item():.3f}")
    model.eval()
    with torch.no_grad():
        accuracy = (
            (model(data["test_images"]).argmax(-1) == data["test_labels"]).float().mean().item()
        )
    log = {"test_accuracy": accuracy, "train_seconds": time.perf_counter() - start, "steps": steps}
    return model, log


def cache_dir() -> Path:
    return Path(os.environ.get("INTERP_CACHE", Path.home() / ".cache" / "interp")) / "depth"


def digits_vit(
    config: ViTConfig = ViTConfig(), *, cache: bool = True, verbose: bool = False
) -> DigitsViT:
    """A trained digits ViT: loaded from the cache when this exact config was trained before.

    The training log (test accuracy, seconds) is attached as ``model.training_log``.
    """
    key = hashlib.sha1(json.dumps(dataclasses.asdict(config), sort_keys=True).encode()).hexdigest()[
        :12
    ]
    path = cache_dir() / f"digits-vit-{key}.pt"
    if cache and path.exists():
        stored = torch.load(path, weights_only=True)
        model = DigitsViT(ViTConfig(**stored["config"]))
        model.load_state_dict(stored["state"])
        model.training_log = stored["log"]
        return model.eval()
    model, log = train_digits_vit(config, verbose=verbose)
    model.training_log = log
    if cache:
        payload = {"config": dataclasses.asdict(config), "state": model.state_dict(), "log": log}
        write_atomically(path, lambda tmp: torch.save(payload, tmp), overwrite=True)
    return model
