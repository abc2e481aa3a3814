"""Patching sites and the grid of cells patched at each: (layer, position, head).

A site names one hook per layer (:data:`SITES`): the residual stream before a block
(``resid_pre``), the attention and MLP outputs (``attn_out``, ``mlp_out``), and per head the
attention output before ``W_O`` (``z``) or the post-rotary queries, keys and values (``q``, ``k``,
``v``; keys and values have one head per KV head under grouped-query attention). A
:class:`Grid` lists the cells patched one at a time: every chosen layer x position (or all
positions together) x head (per-head sites). :func:`patch_edits` turns a chunk of cells into
ONE edit function per hook that patches, for each row of the stacked batch, that row's cell.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from interp.errors import InputTypeError, InvalidArgumentError, UnknownNameError

if TYPE_CHECKING:
    from interp.models.protocol import LanguageModel

SITES: dict[str, str] = {
    "resid_pre": "hook_resid_pre",
    "resid_post": "hook_resid_post",
    "attn_out": "hook_attn_out",
    "mlp_out": "hook_mlp_out",
    "z": "attn.hook_z",
    "q": "attn.hook_q",
    "k": "attn.hook_k",
    "v": "attn.hook_v",
}
HEAD_SITES = ("z", "q", "k", "v")
KV_SITES = ("k", "v")
Positions = str | int | Sequence[int]


@dataclass(frozen=True)
class Grid:
    """The cells of one site: ``layers`` x ``positions`` (None: all positions patched together)
    x ``heads`` (None: a site without heads). ``shape`` is the result's shape, ``axes`` names
    its dimensions."""

    site: str
    layers: list[int]
    positions: list[int] | None
    heads: list[int] | None

    @property
    def hook(self) -> str:
        """The hook name with ``{layer}`` left open."""
        return "blocks.{layer}." + SITES[self.site]

    @property
    def axes(self) -> list[str]:
        return ["layer", *(["position"] if self.positions is not None else [])] + (
            ["head"] if self.heads is not None else []
        )

    @property
    def shape(self) -> tuple[int, ...]:
        sizes = {"layer": len(self.layers), "position": len(self.positions or [])}
        sizes["head"] = len(self.heads or [])
        return tuple(sizes[a] for a in self.axes)

    def cells(self) -> torch.Tensor:
        """``[n_cells, 3]`` rows ``(layer, position or -1 for all, head or -1)`` in the order
        of the result tensor (row-major over ``axes``)."""
        layers = torch.tensor(self.layers, dtype=torch.long)
        positions = torch.tensor(self.positions if self.positions is not None else [-1])
        heads = torch.tensor(self.heads if self.heads is not None else [-1])
        grid = torch.cartesian_prod(layers, positions.long(), heads.long())
        return grid.reshape(-1, 3)


def resolve_sites(sites: str | Sequence[str]) -> list[str]:
    """Site names, checked; a single name or a list."""
    items = [sites] if isinstance(sites, str) else sites
    if not isinstance(items, Sequence) or not items:
        raise InputTypeError(f"sites must be a site name or a list of them, got {sites!r}")
    for site in items:
        if site not in SITES:
            close = difflib.get_close_matches(str(site), SITES, n=2)
            hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
            raise UnknownNameError(
                f"unknown patching site {site!r}{hint}; accepted: {', '.join(SITES)}"
            )
    return list(dict.fromkeys(items))


def make_grid(
    lm: LanguageModel,
    site: str,
    length: int,
    *,
    layers: Sequence[int] | None = None,
    positions: Positions = "each",
    heads: Sequence[int] | None = None,
) -> Grid:
    """The cells of ``site`` on ``lm`` for inputs of ``length`` tokens.

    ``positions``: ``"each"`` (every position, one at a time), ``"all"`` (every position
    together) or a list of positions (negative ones count from the end), one at a time.
    ``heads``: the heads of a per-head site (default all; KV heads for ``k``/``v``).
    """
    chosen = list(range(lm.n_layers)) if layers is None else _ints(layers, "layers")
    bad = [layer for layer in chosen if not 0 <= layer < lm.n_layers]
    if bad:
        raise InvalidArgumentError(f"layers {bad} outside 0..{lm.n_layers - 1} of {lm.name}")
    return Grid(site, chosen, _positions(positions, length), _heads(lm, site, heads))


def _positions(positions: Positions, length: int) -> list[int] | None:
    if positions == "all":
        return None
    if positions == "each":
        return list(range(length))
    if isinstance(positions, str):
        raise InvalidArgumentError(
            f"positions must be 'each', 'all' or a list of positions, got {positions!r}"
        )
    items = _ints([positions] if isinstance(positions, int) else positions, "positions")
    bad = [p for p in items if not -length <= p < length]
    if bad:
        raise InvalidArgumentError(f"positions {bad} outside an input of {length} tokens")
    return [p % length for p in items]


def _heads(lm: LanguageModel, site: str, heads: Sequence[int] | None) -> list[int] | None:
    if site not in HEAD_SITES:
        return None
    count = lm.n_kv_heads if site in KV_SITES else lm.n_heads
    chosen = list(range(count)) if heads is None else _ints(heads, "heads")
    bad = [h for h in chosen if not 0 <= h < count]
    if bad:
        kind = "KV heads" if site in KV_SITES else "heads"
        raise InvalidArgumentError(f"{site}: heads {bad} outside the {count} {kind} of {lm.name}")
    return chosen


def _ints(values: object, what: str) -> list[int]:
    items = list(values) if isinstance(values, Sequence | torch.Tensor) else None
    if not items or not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        raise InvalidArgumentError(f"{what} must be a non-empty list of ints, got {values!r}")
    return items


def patch_edits(
    chunk: torch.Tensor, grids: list[Grid], sources: dict[str, torch.Tensor], n_examples: int
) -> dict[str, object]:
    """ONE edit function per hook for a chunk of cells stacked along the batch axis.

    ``chunk [B, 4]`` rows ``(grid index, layer, position or -1, head or -1)``; variant ``i`` owns
    rows ``i * n_examples .. (i + 1) * n_examples - 1`` of the run (the inputs repeated ``B``
    times). ``sources[hook] [n_examples, pos, ...]`` holds the values patched in.
    """
    edits: dict[str, object] = {}
    for key in torch.unique(chunk[:, :2], dim=0).tolist():
        grid_index, layer = key
        mine = ((chunk[:, 0] == grid_index) & (chunk[:, 1] == layer)).nonzero().squeeze(1)
        hook = grids[grid_index].hook.format(layer=layer)
        examples = torch.arange(n_examples).repeat(len(mine))
        rows = (mine[:, None] * n_examples + torch.arange(n_examples)).reshape(-1)
        positions = chunk[mine, 2].repeat_interleave(n_examples)
        heads = chunk[mine, 3].repeat_interleave(n_examples)
        edits[hook] = _cell_patch(rows, examples, positions, heads, sources[hook])
    return edits


def _cell_patch(
    rows: torch.Tensor,
    examples: torch.Tensor,
    positions: torch.Tensor,
    heads: torch.Tensor,
    source: torch.Tensor,
):
    """``fn(value, ctx)``: each row in ``rows`` gets ``source[example]`` at its cell."""
    all_positions = bool((positions < 0).all())
    per_head = bool((heads >= 0).all())
    index: tuple = (rows,) if all_positions else (rows, positions)
    source_index: tuple = (examples,) if all_positions else (examples, positions)
    if per_head:
        index = (*index, heads) if not all_positions else (rows, slice(None), heads)
        source_index = (
            (*source_index, heads) if not all_positions else (examples, slice(None), heads)
        )

    def patch(value: torch.Tensor, ctx: object) -> torch.Tensor:
        device = value.device
        where = tuple(i.to(device) if isinstance(i, torch.Tensor) else i for i in index)
        take = tuple(i.to(device) if isinstance(i, torch.Tensor) else i for i in source_index)
        out = value.clone()
        out[where] = source.to(device)[take].to(value.dtype)
        return out

    return patch
