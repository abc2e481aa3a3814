"""Cut a layer-dissimilarity matrix into phases: runs of layers that behave alike.

Two methods, both scoring a partition by the dissimilarity it leaves *inside* phases
(W(P) = sum over pairs i < j in phase P of D[i, j]); minimizing the within-phase sum is the same
as maximizing the weight of the cut between phases.

- ``"dp"`` (default): the exact optimum over *contiguous* partitions into k phases by dynamic
  programming, O(k·L²) with 2-D prefix sums. Depth phases are runs of consecutive layers, so this
  is the natural formulation.
- ``"maxcut"``: the procedure of Jacobs et al. 2025 (arXiv 2512.19941): recursive exact max-cut.
  Each part is split by its maximum cut, found by enumerating all 2^(m-1) bipartitions of its m
  layers (vectorized; exact, feasible up to ``MAXCUT_LIMIT`` = 22 layers). Max-cut does not force
  contiguity, so phases may be non-contiguous sets of layers (reported by ``contiguous``).

Choice of k. With ``k`` given, ``"dp"`` returns the optimal k-phase partition and ``"maxcut"``
repeatedly splits the part whose best cut is heaviest until k parts exist. With ``k=None`` both use
the paper's stopping rule with threshold ``epsilon`` as a fraction of the matrix's total weight
W = sum_{i<j} D[i, j]: ``"maxcut"`` splits a part only if its max-cut weighs at least epsilon·W
(paper, DINOv2 ViT-B/14: epsilon 0.20 -> [1-7][8-12], 0.10 -> [1-7][8-10][11-12]); ``"dp"`` picks
the smallest k for which one more phase would cut less than epsilon·W more weight.

Null baseline. The cut fraction alone does not show block structure: any matrix that grows with
the depth distance |i - j| is cut well by contiguous runs (a plain ramp D = |i - j| of 12 layers
has cut fraction 0.895 at k = 3, as much as a trained digits ViT). So every result is compared
with the *lag null* N: N[i, j] = mean of D over all pairs at the same lag |i - j| (D averaged
along its diagonals). N keeps how dissimilarity grows with depth distance and removes any block
structure; it has the same total weight W, and any matrix that depends on |i - j| alone (a linear
or saturating ramp, a uniform matrix) is its own null. ``null_cut_fraction`` is the cut fraction
the same method reaches on N with the same k, and

    block_score = (cut_fraction - null_cut_fraction) / (1 - null_cut_fraction),

0 for a matrix without block structure (a ramp), 1 for perfect blocks (0 inside phases), negative
when the phases cut less than the null does. With ``k=None`` the epsilon rule's phases are kept
only if their block score reaches ``min_score`` (default 0.25); otherwise the result is one phase
("no block structure beyond a smooth drift"), and ``settings`` records what the rule had found.
On planted blocks the score is 0.6-1.0; on the digits ViT's layers it is below 0.1.

Degenerate input: a matrix whose entries are all below ``ZERO`` = 1e-6 (identical representations;
1e-6 absorbs float32 rounding of 1 - cos) has nothing to cut and gives one phase.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch

from interp import __version__
from interp.depth.similarity import LayerSimilarity
from interp.results import Result
from interp.viz import heatmap

METHODS = ("dp", "maxcut")
MAXCUT_LIMIT = 22
ZERO = 1e-6
MIN_SCORE = 0.25
_CHUNK = 1 << 16


@dataclasses.dataclass
class Phases(Result):
    """A partition of a network's layers into phases, with its cost.

    ``phases`` lists the layers of each phase (labels as in the similarity matrix: block l is l).
    ``within[p]`` is the summed dissimilarity of phase p's layer pairs, ``mean_within[p]`` its mean
    over pairs; ``cut_fraction`` = 1 - sum(within) / W is the share of the total dissimilarity that
    falls between phases (1.0: no dissimilarity left inside phases). ``within_by_k[k-1]`` is the
    optimal contiguous within-phase sum for k phases. ``null_cut_fraction`` and ``block_score``
    compare the partition with the lag null (module docstring); ``null_within_by_k`` is the null's
    optimal contiguous within-phase sum for each k.
    """

    phases: list[list[int]]
    method: str
    epsilon: float | None
    contiguous: bool
    within: torch.Tensor
    mean_within: torch.Tensor
    cut_fraction: float
    total_weight: float
    within_by_k: torch.Tensor
    null_cut_fraction: float
    block_score: float
    null_within_by_k: torch.Tensor
    matrix: torch.Tensor
    layers: list[int]
    source: str = ""
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    version: str = __version__

    @property
    def k(self) -> int:
        return len(self.phases)

    @property
    def boundaries(self) -> list[int]:
        """First layer of every phase after the first; raises for non-contiguous phases."""
        return [a for a, _ in self.spans[1:]]

    @property
    def spans(self) -> list[tuple[int, int]]:
        """(first, last) layer of each phase; raises for non-contiguous phases."""
        if not self.contiguous:
            raise ValueError(f"phases {self.describe()} are not contiguous runs of layers")
        return [(phase[0], phase[-1]) for phase in self.phases]

    def describe(self) -> str:
        return "".join(f"[{_runs(phase)}]" for phase in self.phases)

    def table(self) -> str:
        head = (
            f"{self.k} phases by {self.method}"
            + (f" (epsilon {self.epsilon:g})" if self.epsilon is not None else "")
            + f" of {self.source}: {self.describe()}; cut fraction {self.cut_fraction:.3f} "
            f"(lag null {self.null_cut_fraction:.3f}, block score {self.block_score:.3f})"
        )
        lines = [head]
        rule = self.settings.get("rule_phases")
        if rule is not None:
            lines.append(
                f"no block structure beyond a smooth drift: the epsilon rule's phases {rule} "
                f"score {self.settings['rule_score']:.3f} < min_score {self.settings['min_score']:g} "
                "against the lag null, so 1 phase is reported"
            )
        lines += [
            f"{'phase':>5} {'layers':>14} {'n':>3} {'within-sum':>10} {'mean-within':>11}",
        ]
        for p, phase in enumerate(self.phases):
            lines.append(
                f"{p + 1:>5} {_runs(phase):>14} {len(phase):>3} {float(self.within[p]):>10.4f} "
                f"{float(self.mean_within[p]):>11.4f}"
            )
        return "\n".join(lines)

    def figure(self) -> go.Figure:
        ticks = [str(layer) for layer in self.layers]
        fig = heatmap(
            self.matrix,
            title=f"Phases {self.describe()} ({self.method}) of {self.source}, "
            f"block score {self.block_score:.2f} against the lag null",
            x_label="layer",
            y_label="layer",
            x_ticks=ticks,
            y_ticks=ticks,
            hover="dissimilarity",
            zmin=0.0,
        )
        index = {layer: i for i, layer in enumerate(self.layers)}
        for phase in self.phases:
            for start, stop in _run_bounds(phase):
                lo, hi = index[start] - 0.5, index[stop] + 0.5
                fig.add_shape(
                    type="rect", x0=lo, x1=hi, y0=lo, y1=hi, line={"color": "red", "width": 3}
                )
        return fig


def _run_bounds(layers: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for layer in layers:
        if runs and layer == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], layer)
        else:
            runs.append((layer, layer))
    return runs


def _runs(layers: list[int]) -> str:
    return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in _run_bounds(layers))


def _check_matrix(matrix: Any) -> torch.Tensor:
    if isinstance(matrix, np.ndarray):
        matrix = torch.from_numpy(matrix)
    if not isinstance(matrix, torch.Tensor):
        raise TypeError(
            f"expected a LayerSimilarity or a square matrix (tensor/array), got {type(matrix).__name__}"
        )
    m = matrix.detach().double()
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"dissimilarity matrix must be square [L, L], got {tuple(m.shape)}")
    if m.shape[0] < 2:
        raise ValueError("need at least 2 layers to segment")
    if not torch.isfinite(m).all():
        raise ValueError("dissimilarity matrix contains NaN or inf")
    if (m < -1e-9).any():
        raise ValueError(
            "dissimilarity matrix has negative entries; pass dissimilarities (e.g. 1 - cos)"
        )
    if not torch.allclose(m, m.T, atol=1e-6, rtol=1e-5):
        raise ValueError("dissimilarity matrix must be symmetric")
    return ((m + m.T) / 2).clamp_min(0.0).fill_diagonal_(0.0)


def segment_costs(matrix: torch.Tensor) -> torch.Tensor:
    """C[a, b] = sum over a <= i < j <= b of D[i, j] for every run [a, b] (inf where a > b)."""
    n = matrix.shape[0]
    prefix = torch.zeros(n + 1, n + 1, dtype=matrix.dtype)
    prefix[1:, 1:] = matrix.cumsum(0).cumsum(1)
    a = torch.arange(n)[:, None]
    b = torch.arange(n)[None, :]
    block = prefix[b + 1, b + 1] - prefix[a, b + 1] - prefix[b + 1, a] + prefix[a, a]
    return torch.where(a <= b, block / 2, torch.full_like(block, math.inf))


def lag_null(matrix: torch.Tensor) -> torch.Tensor:
    """N[i, j] = mean of D[a, b] over all pairs with |a - b| = |i - j| (D averaged along diagonals)."""
    n = matrix.shape[0]
    lag = (torch.arange(n)[:, None] - torch.arange(n)[None, :]).abs().flatten()
    sums = torch.zeros(n, dtype=matrix.dtype).scatter_add_(0, lag, matrix.flatten())
    counts = torch.bincount(lag, minlength=n).to(matrix.dtype)
    return (sums / counts)[lag].view(n, n)


def block_score(cut_fraction: float, null_cut_fraction: float) -> float:
    """(cut - null) / (1 - null): 0 for no structure beyond the null, 1 for perfect blocks."""
    room = 1.0 - null_cut_fraction
    return (cut_fraction - null_cut_fraction) / room if room > 1e-12 else 0.0


def contiguous_segmentation(
    matrix: torch.Tensor, k_max: int
) -> tuple[torch.Tensor, list[list[list[int]]]]:
    """Exact DP: optimal within-phase sums for k = 1..k_max and the optimal runs for each k."""
    n = matrix.shape[0]
    cost = segment_costs(matrix)
    best = [cost[0].clone()]  # best[k-1][b]: optimal k-phase cost of layers 0..b
    choice = [torch.zeros(n, dtype=torch.long)]
    inf = torch.tensor([math.inf], dtype=matrix.dtype)
    for _ in range(1, k_max):
        shifted = torch.cat([inf, best[-1][:-1]])  # shifted[a] = best cost of 0..a-1
        total = shifted[:, None] + cost  # [a, b]: last phase is a..b
        value, start = total.min(dim=0)
        best.append(value)
        choice.append(start)
    optima = torch.stack([row[-1] for row in best])
    partitions = []
    for k in range(1, k_max + 1):
        end, runs = n - 1, []
        for level in range(k - 1, -1, -1):
            start = int(choice[level][end]) if level > 0 else 0
            runs.append(list(range(start, end + 1)))
            end = start - 1
        partitions.append(runs[::-1])
    return optima, partitions


def max_cut(matrix: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Exact maximum cut of a symmetric weight matrix by enumerating all 2^(m-1) bipartitions.

    Returns (cut weight, boolean side of each node). With s in {-1, +1}^m,
    cut(s) = (sum_ij W_ij - s^T W s) / 4; node 0 is fixed to one side to skip mirror images.
    """
    m = matrix.shape[0]
    if m > MAXCUT_LIMIT:
        raise ValueError(
            f"exact max-cut enumerates 2^{m - 1} bipartitions; limited to {MAXCUT_LIMIT} layers. "
            "Use method='dp' (exact contiguous segmentation, any size)."
        )
    total = matrix.sum()
    bits = torch.arange(m - 1)
    best_value, best_code = -math.inf, 0
    for begin in range(0, 1 << (m - 1), _CHUNK):
        codes = torch.arange(begin, min(begin + _CHUNK, 1 << (m - 1)))
        rest = ((codes[:, None] >> bits) & 1).to(matrix.dtype) * 2 - 1
        signs = torch.cat([torch.ones(len(codes), 1, dtype=matrix.dtype), rest], dim=1)
        cuts = (total - ((signs @ matrix) * signs).sum(dim=1)) / 4
        value, where = cuts.max(dim=0)
        if float(value) > best_value + 1e-12:
            best_value, best_code = float(value), int(codes[where])
    side = torch.cat(
        [torch.ones(1, dtype=torch.bool), ((best_code >> bits) & 1).bool()]
    )  # node 0: +1
    return best_value, side


def recursive_max_cut(matrix: torch.Tensor, k: int | None, epsilon: float) -> list[list[int]]:
    """The paper's recursive max-cut: split parts by their max cut (see module docstring)."""
    threshold = epsilon * float(torch.triu(matrix, 1).sum())
    parts = [list(range(matrix.shape[0]))]
    cuts: dict[tuple[int, ...], tuple[float, torch.Tensor]] = {}

    def best(part: list[int]) -> tuple[float, torch.Tensor]:
        key = tuple(part)
        if key not in cuts:
            index = torch.tensor(part)
            cuts[key] = max_cut(matrix[index][:, index])
        return cuts[key]

    while k is None or len(parts) < k:
        splittable = [p for p in parts if len(p) > 1]
        if not splittable:
            break
        if k is None:
            chosen = next(
                (p for p in splittable if best(p)[0] > 0.0 and best(p)[0] >= threshold), None
            )
            if chosen is None:
                break
        else:
            chosen = max(splittable, key=lambda p: best(p)[0])
        side = best(chosen)[1]
        parts.remove(chosen)
        parts += [
            [x for x, s in zip(chosen, side.tolist(), strict=True) if s == flag]
            for flag in (False, True)
        ]
    return sorted(parts, key=min)


def epsilon_k(optima: torch.Tensor, epsilon: float) -> int:
    """DP stopping rule: the smallest k whose next phase would cut less than epsilon·W more."""
    total = float(optima[0])
    if total <= 0.0:
        return 1
    gains = optima[:-1] - optima[1:]
    small = (gains < epsilon * total).nonzero()
    return int(small[0]) + 1 if len(small) else len(optima)


def _within(matrix: torch.Tensor, parts: list[list[int]]) -> torch.Tensor:
    index = [torch.tensor(p) for p in parts]
    return torch.stack([torch.triu(matrix[i][:, i], 1).sum() for i in index])


def _labelled_matrix(
    similarity: Any, include_embedding: bool, layers: list[int] | None
) -> tuple[torch.Tensor, list[int], str]:
    if isinstance(similarity, LayerSimilarity):
        if layers is not None:
            raise ValueError(
                "layers= labels only apply to a raw matrix; a LayerSimilarity has its own"
            )
        labels = list(similarity.layers)
        matrix = _check_matrix(similarity.matrix)
        if labels[0] == 0 and not include_embedding:
            matrix, labels = matrix[1:, 1:], labels[1:]
        return matrix, labels, similarity.source
    matrix = _check_matrix(similarity)
    labels = list(range(matrix.shape[0])) if layers is None else list(layers)
    if len(labels) != matrix.shape[0]:
        raise ValueError(f"{len(labels)} layer labels for a {matrix.shape[0]}-layer matrix")
    return matrix, labels, ""


def segment_phases(
    similarity: LayerSimilarity | torch.Tensor | np.ndarray,
    k: int | None = None,
    *,
    method: str = "dp",
    epsilon: float = 0.1,
    min_score: float = MIN_SCORE,
    include_embedding: bool = False,
    layers: list[int] | None = None,
) -> Phases:
    """Partition the layers of a dissimilarity matrix into phases (see the module docstring).

    ``similarity``: a :class:`LayerSimilarity` (its embedding row, layer 0, is left out unless
    ``include_embedding``; phases then name blocks 1..L) or a square dissimilarity matrix (labels
    ``layers``, default 0..n-1). ``min_score`` gates the ``k=None`` rule against the lag null
    (-1 turns the gate off); with ``k`` given, exactly k phases are returned, ungated.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not 0.0 < epsilon < 1.0:
        raise ValueError(f"epsilon is a fraction of the total weight in (0, 1), got {epsilon}")
    if not -1.0 <= min_score <= 1.0:
        raise ValueError(f"min_score is a block score in [-1, 1], got {min_score}")
    matrix, labels, source = _labelled_matrix(similarity, include_embedding, layers)
    n = matrix.shape[0]
    if k is not None and not (isinstance(k, int) and 1 <= k <= n):
        raise ValueError(
            f"k must be an integer between 1 and the number of layers ({n}), got {k!r}"
        )
    if float(matrix.max()) <= ZERO:  # identical representations: nothing to cut
        matrix = torch.zeros_like(matrix)
    null = lag_null(matrix)
    optima, partitions = contiguous_segmentation(matrix, n)
    null_optima, _ = contiguous_segmentation(null, n)
    total = float(optima[0])

    def partition(count: int | None) -> list[list[int]]:
        if method == "dp":
            return partitions[(count or epsilon_k(optima, epsilon)) - 1]
        return recursive_max_cut(matrix, count, epsilon)

    def scored(parts: list[list[int]]) -> tuple[torch.Tensor, float, float]:
        within = _within(matrix, parts)
        if total <= 0.0 or len(parts) == 1:  # nothing cut, by the matrix or by the null
            return within, 0.0, 0.0
        if method == "dp":
            null_within = float(null_optima[len(parts) - 1])
        else:
            null_within = float(_within(null, recursive_max_cut(null, len(parts), epsilon)).sum())
        return within, 1.0 - float(within.sum()) / total, 1.0 - null_within / total

    parts = partition(k)
    within, cut, null_cut = scored(parts)
    settings: dict[str, Any] = {
        "k_requested": k,
        "include_embedding": include_embedding,
        "min_score": min_score,
        "null": "lag (D averaged along its diagonals)",
    }
    if k is None and len(parts) > 1 and block_score(cut, null_cut) < min_score:
        settings["rule_phases"] = "".join(f"[{_runs([labels[i] for i in p])}]" for p in parts)
        settings["rule_score"] = block_score(cut, null_cut)
        parts = [list(range(n))]
        within, cut, null_cut = scored(parts)
    pairs = torch.tensor([max(len(p) * (len(p) - 1) / 2, 1.0) for p in parts], dtype=torch.float64)
    return Phases(
        phases=[[labels[i] for i in p] for p in parts],
        method=method,
        epsilon=epsilon if k is None else None,
        contiguous=all(p == list(range(p[0], p[-1] + 1)) for p in parts),
        within=within,
        mean_within=within / pairs,
        cut_fraction=cut,
        total_weight=total,
        within_by_k=optima,
        null_cut_fraction=null_cut,
        block_score=block_score(cut, null_cut),
        null_within_by_k=null_optima,
        matrix=matrix.float(),
        layers=labels,
        source=source,
        settings=settings,
    )
