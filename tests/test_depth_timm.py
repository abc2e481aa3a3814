"""timm ViTs in the depth analyses, by structure.

timm cannot be imported in this project's environment (it needs torchvision, which has no build
for the project's torch), so the support is tested against ``TimmLikeViT`` below: a small module
that reproduces timm's ``VisionTransformer.forward_features`` and ``Block.forward``
(timm/models/vision_transformer.py; ``Attention``, ``Mlp``, ``LayerScale`` and ``DropPath`` from
timm.layers), module names included. Where timm imports, the same checks run on a real timm model.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from interp.depth import layer_similarity, view_of
from interp.depth.raptor import Raptor
from interp.depth.views import branches


class Attention(nn.Module):
    """timm.layers.Attention (qk_norm off, fused SDPA path)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.q_norm, self.k_norm, self.norm = nn.Identity(), nn.Identity(), nn.Identity()
        self.attn_drop = nn.Dropout(0.0)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(0.0)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        x = x.transpose(1, 2).reshape(b, n, c)
        return self.proj_drop(self.proj(self.norm(x)))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.act, self.drop1 = nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(0.0)
        self.norm, self.fc2, self.drop2 = nn.Identity(), nn.Linear(hidden, dim), nn.Dropout(0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.norm(self.drop1(self.act(self.fc1(x))))))


class LayerScale(nn.Module):
    def __init__(self, dim: int, init_values: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class DropPath(nn.Module):
    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class Block(nn.Module):
    """timm Block: x + drop_path1(ls1(attn(norm1 x))), then x + drop_path2(ls2(mlp(norm2 x)))."""

    def __init__(self, dim: int, heads: int, init_values: float, drop_path: float) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim, eps=1e-6), Attention(dim, heads)
        self.ls1, self.drop_path1 = LayerScale(dim, init_values), DropPath(drop_path)
        self.norm2, self.mlp = nn.LayerNorm(dim, eps=1e-6), Mlp(dim, 2 * dim)
        self.ls2, self.drop_path2 = LayerScale(dim, init_values), DropPath(drop_path)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x), attn_mask=attn_mask)))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int) -> None:
        super().__init__()
        self.proj, self.norm = nn.Conv2d(3, dim, patch, stride=patch), nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


class TimmLikeViT(nn.Module):
    """timm VisionTransformer (class token, optional registers, pos_embed over prefix + patches)."""

    def __init__(self, depth: int = 3, dim: int = 32, registers: int = 0) -> None:
        super().__init__()
        self.embed_dim, self.num_prefix_tokens = dim, 1 + registers
        self.patch_embed = PatchEmbed(4, dim)
        self.cls_token = nn.Parameter(0.02 * torch.randn(1, 1, dim))
        self.reg_token = nn.Parameter(0.02 * torch.randn(1, registers, dim)) if registers else None
        self.pos_embed = nn.Parameter(0.02 * torch.randn(1, 16 + 1 + registers, dim))
        self.pos_drop, self.patch_drop, self.norm_pre = (
            nn.Dropout(0.0),
            nn.Identity(),
            nn.Identity(),
        )
        rates = torch.linspace(0, 0.2, depth).tolist()
        self.blocks = nn.Sequential(*[Block(dim, 2, 0.5, rate) for rate in rates])
        self.norm, self.fc_norm, self.head = (
            nn.LayerNorm(dim, eps=1e-6),
            nn.Identity(),
            nn.Linear(dim, 5),
        )

    def _pos_embed(self, x: torch.Tensor) -> torch.Tensor:
        to_cat = [self.cls_token.expand(x.shape[0], -1, -1)]
        if self.reg_token is not None:
            to_cat.append(self.reg_token.expand(x.shape[0], -1, -1))
        return self.pos_drop(torch.cat(to_cat + [x], dim=1) + self.pos_embed)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm_pre(self.patch_drop(self._pos_embed(self.patch_embed(x))))
        return self.norm(self.blocks(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.fc_norm(self.forward_features(x)[:, 0]))


def _timm_models() -> list[tuple[nn.Module, int]]:
    torch.manual_seed(0)
    return [(TimmLikeViT().eval(), 1), (TimmLikeViT(registers=2).eval(), 3)]


def _check_view_branches_and_raptor(model: nn.Module, n_prefix: int, n_patches: int) -> None:
    images = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    view = view_of(model)
    assert view.n_prefix == n_prefix and view.layer_paths[0] == "blocks.0"
    states = view.states(images)
    assert states.shape[:3] == (view.n_layers + 1, 3, n_patches + n_prefix)
    with torch.no_grad():
        assert torch.allclose(
            view.final_norm(states[-1]), model.forward_features(images), atol=1e-5
        )
        for layer, block in enumerate(view.layers):
            attention, mlp = branches(block)
            x = states[layer] + attention(states[layer])
            assert torch.allclose(x + mlp(x), states[layer + 1], atol=1e-5)
    raptor = Raptor(view.layers, [(i, i) for i in range(1, view.n_layers + 1)], states.shape[-1])
    assert type(raptor.blocks[0].layer).__name__ == "Block"
    with torch.no_grad():
        assert torch.allclose(raptor.eval()(states[0]), states[1:], atol=1e-5)
    similarity = layer_similarity(model, images)
    assert similarity.matrix.shape == (view.n_layers + 1, view.n_layers + 1)


@pytest.mark.parametrize("index", [0, 1])
def test_timm_structured_vit_views_split_and_raptor(index):
    model, n_prefix = _timm_models()[index]
    _check_view_branches_and_raptor(model, n_prefix, n_patches=16)


def test_branches_leave_out_drop_path_in_training_mode():
    torch.manual_seed(0)
    block = Block(16, 2, 0.5, drop_path=0.9).train()
    x = torch.randn(64, 5, 16)
    attention, mlp = branches(block)
    assert torch.equal(attention(x), attention(x))  # no random path dropping inside a branch
    assert not torch.equal(block(x), block(x))


def test_real_timm_vit_if_timm_imports():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.models.vision_transformer.VisionTransformer(
        img_size=16, patch_size=4, embed_dim=32, depth=3, num_heads=2, reg_tokens=2, init_values=0.5
    ).eval()
    _check_view_branches_and_raptor(model, 3, n_patches=16)
