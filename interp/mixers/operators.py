"""Interaction operators of sequence mixers (Ghodsi 2025, "How Many Heads Make an SSM?").

Every sequence mixer is written as ``y_i = sum_{j <= i} W_ij(X) x_j`` with ``W_ij`` a
``d_out x d_in`` matrix (column vectors here: ``W_ij`` acts on ``x_j``). Three structured forms,
none of which materializes the ``T x T x d x d`` tensor:

- attention (:class:`AttentionOperators`): ``W_ij = sum_h alpha^h_ij OV_h`` with the pattern
  ``alpha^h`` and the per-head value/output map ``OV_h = (W_V^h W_O^h)^T``, kept as the factors
  ``W_V [H, d, d_head]`` and ``W_O [H, d_head, d]`` (TransformerLens layout);
- a linear time-invariant SSM (:class:`LTIOperators`): ``h_t = A h_{t-1} + B x_t``, ``y_t = C h_t``
  gives ``W_ij = K_{i-j}`` with the lag operators ``K_l = C A^l B``;
- a selective (Mamba-style, diagonal) SSM (:class:`SelectiveOperators`): per channel ``c`` and
  state ``n``, ``h_t = exp(Delta_t A) h_{t-1} + Delta_t B_t u_t`` (Mamba's discretization:
  ``log Abar_t = Delta_t A``, ``Bbar_t = Delta_t B_t``), ``y_t = C_t . h_t + D u_t``, so
  ``W_ij = diag_c(sum_n C_i[c,n] (prod_{k=j+1..i} Abar_k[c,n]) Bbar_j[c,n])`` (+ ``D`` at i = j).

Each exposes ``matrix(i, j)`` (one dense ``W_ij``), ``apply(x)`` (the map itself, to check
against the layer) and ``span_rows()`` (chunks of the stacked vectors whose span the interaction
rank measures; see :mod:`interp.mixers.rank`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from interp.errors import InvalidArgumentError

Kind = str  # "attention" | "lti" | "selective"
KERNEL_BLOCK = 2**24  # values of one [T, T, channels, N] intermediate of the selective kernel
MAX_KERNEL = 2**27  # values of the whole [T, T, channels] selective kernel (1 GiB in float64)


def _f64(x: torch.Tensor) -> torch.Tensor:
    return x.detach().to("cpu", torch.float64)


# ----------------------------------------------------------------- attention
@dataclass
class AttentionOperators:
    """``W_ij = sum_h pattern[h, i, j] OV_h`` for one sequence (``pattern [H, T, T]``)."""

    pattern: torch.Tensor
    W_V: torch.Tensor
    W_O: torch.Tensor
    layer: int | None = None
    kind: Kind = "attention"

    @property
    def length(self) -> int:
        return self.pattern.shape[-1]

    def ov(self, head: int) -> torch.Tensor:
        """The head's value/output map ``OV_h [d_out, d_in]`` (column convention)."""
        return (_f64(self.W_V[head]) @ _f64(self.W_O[head])).T

    def matrix(self, i: int, j: int) -> torch.Tensor:
        weights = _f64(self.pattern[:, i, j])
        return sum(w * self.ov(h) for h, w in enumerate(weights))

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """``y_i = sum_j W_ij x_j`` for ``x [T, d]`` (attention output before the bias)."""
        v = torch.einsum("td,hde->hte", _f64(x), _f64(self.W_V))
        z = torch.einsum("hij,hje->hie", _f64(self.pattern), v)
        return torch.einsum("hie,hed->id", z, _f64(self.W_O))

    def gram(self) -> torch.Tensor:
        """``G[h, k] = <OV_h, OV_k>_F`` from the factors (never the ``d x d`` maps)."""
        wv, wo = _f64(self.W_V), _f64(self.W_O)
        p = torch.einsum("hdi,kdj->hkij", wv, wv)
        q = torch.einsum("hie,kje->hkij", wo, wo)
        return (p * q).sum((-1, -2))

    def span_rows(self) -> Iterator[torch.Tensor]:
        """Rows whose Gram matrix is :meth:`gram` (its Cholesky-like square root)."""
        values, vectors = torch.linalg.eigh(self.gram())
        yield (vectors * values.clamp_min(0).sqrt()).T


# ----------------------------------------------------------------- linear time-invariant SSM
@dataclass
class LinearSSM:
    """``h_t = A h_{t-1} + B x_t``, ``y_t = C h_t`` (``A [n, n]``, ``B [n, d_in]``, ``C [d_out,
    n]``), ``h_0 = 0``."""

    A: torch.Tensor
    B: torch.Tensor
    C: torch.Tensor

    @property
    def state_size(self) -> int:
        return self.A.shape[0]

    def lag_operators(self, n_lags: int) -> torch.Tensor:
        """``K_l = C A^l B`` for ``l = 0 .. n_lags - 1``: ``[n_lags, d_out, d_in]``."""
        A, B, C = _f64(self.A), _f64(self.B), _f64(self.C)
        out, power = [], B
        for _ in range(n_lags):
            out.append(C @ power)
            power = A @ power
        return torch.stack(out)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Run the recurrence on ``x [T, d_in]`` (any dtype; computed in x's dtype)."""
        A, B, C = (m.to(x.dtype) for m in (self.A, self.B, self.C))
        h = x.new_zeros(A.shape[0])
        ys = []
        for t in range(x.shape[0]):
            h = A @ h + B @ x[t]
            ys.append(C @ h)
        return torch.stack(ys)

    @classmethod
    def random(
        cls, span: int, d_in: int = 4, d_out: int = 4, *, seed: int = 0, radius: float = 0.9
    ) -> LinearSSM:
        """A stable SSM whose lag operators span exactly ``span`` dimensions.

        ``A = diag(lambda_1..lambda_k)`` with ``k = span`` distinct eigenvalues evenly spread in
        ``[-radius, radius]``, ``B``, ``C`` Gaussian. Then ``K_l = sum_m lambda_m^l c_m b_m^T``:
        the ``k`` rank-one maps ``c_m b_m^T`` are independent (almost surely, for ``k <= d_in
        d_out``) and the Vandermonde matrix ``[lambda_m^l]`` (l < k) is invertible, so the span of
        ``{K_l}`` is exactly ``span{c_m b_m^T}``, of dimension ``k``. A random rotation ``Q`` hides
        the diagonal form (``A = Q diag Q^T``) without changing the lag operators.
        """
        if not 1 <= span <= d_in * d_out:
            raise InvalidArgumentError(
                f"span must be in 1..d_in*d_out={d_in * d_out}, got {span!r}"
            )
        g = torch.Generator().manual_seed(seed)
        eig = torch.linspace(-radius, radius, span, dtype=torch.float64) if span > 1 else None
        eig = eig if eig is not None else torch.tensor([radius], dtype=torch.float64)
        q, _ = torch.linalg.qr(torch.randn(span, span, generator=g, dtype=torch.float64))
        A = q @ torch.diag(eig) @ q.T
        B = q @ torch.randn(span, d_in, generator=g, dtype=torch.float64)
        C = torch.randn(d_out, span, generator=g, dtype=torch.float64) @ q.T
        return cls(A, B, C)


@dataclass
class LTIOperators:
    """``W_ij = K_{i-j}`` of a :class:`LinearSSM` on ``length`` tokens."""

    ssm: LinearSSM
    length: int
    layer: int | None = None
    kind: Kind = "lti"

    def matrix(self, i: int, j: int) -> torch.Tensor:
        if j > i:
            return torch.zeros(self.ssm.C.shape[0], self.ssm.B.shape[1], dtype=torch.float64)
        return self.ssm.lag_operators(i - j + 1)[-1]

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        kernel = self.ssm.lag_operators(x.shape[0])
        x = _f64(x)
        T = x.shape[0]
        return torch.stack([sum(kernel[i - j] @ x[j] for j in range(i + 1)) for i in range(T)])

    def span_rows(self) -> Iterator[torch.Tensor]:
        """``vec K_l`` for ``l < n`` (Cayley-Hamilton: later lags add nothing to the span)."""
        n_lags = min(self.ssm.state_size, self.length)
        yield self.ssm.lag_operators(n_lags).flatten(1)


# ----------------------------------------------------------------- selective (diagonal) SSM
@dataclass
class SelectiveOperators:
    """``W_ij`` of a diagonal selective SSM on one sequence, from its per-token parameters.

    ``delta [T, c]`` (softplus'd step), ``A [c, N]`` (negative: ``log Abar = delta * A``),
    ``B``/``C [T, c, N]`` (broadcast views of Mamba's ``[T, N]`` or Mamba-2's per-group values)
    and the skip ``D [c]``. ``W_ij`` is diagonal over the ``c`` channels; :meth:`kernel` gives its
    diagonals ``w[i, j, c]`` for a block of channels.
    """

    delta: torch.Tensor
    A: torch.Tensor
    B: torch.Tensor
    C: torch.Tensor
    D: torch.Tensor | None = None
    layer: int | None = None
    kind: Kind = "selective"
    heads: int | None = None  # Mamba-2: channels share Delta and A by head (the rank bound)
    skip: bool = True  # include D u_i (itself one head: alpha_ij = [i == j], V = diag D)

    @property
    def length(self) -> int:
        return self.delta.shape[0]

    @property
    def channels(self) -> int:
        return self.delta.shape[1]

    def kernel(self, channels: slice = slice(None), *, skip: bool = True) -> torch.Tensor:
        """``w[i, j, c]`` (zero above the diagonal) for the channels in ``channels``: memory
        ``T * T * c * N`` float64 values for that block."""
        delta = _f64(self.delta[:, channels])
        A = _f64(self.A[channels])
        B, C = _f64(self.B[:, channels]), _f64(self.C[:, channels])
        log_decay = torch.cumsum(delta[:, :, None] * A, 0)  # [T, c, N]: sum_{k<=t} delta_k A
        diff = log_decay[:, None] - log_decay[None, :]  # [i, j, c, N] = sum_{j<k<=i}
        T = self.length
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        diff = torch.where(causal[:, :, None, None], diff, torch.full_like(diff, -torch.inf))
        bbar = delta[:, :, None] * B  # [T, c, N]
        w = torch.einsum("icn,ijcn,jcn->ijc", C, diff.exp(), bbar)
        if skip and self.D is not None:
            index = torch.arange(T)
            w[index, index] += _f64(self.D[channels])
        return w

    def matrix(self, i: int, j: int) -> torch.Tensor:
        return torch.diag(self.full_kernel()[i, j])

    def apply(self, u: torch.Tensor) -> torch.Tensor:
        """``y_i = sum_j W_ij u_j`` for the scan input ``u [T, c]`` (before the gate)."""
        return torch.einsum("ijc,jc->ic", self.full_kernel(), _f64(u))

    def full_kernel(self) -> torch.Tensor:
        """:meth:`kernel` over every channel (``[T, T, c]``), computed a block of channels at a
        time so that no intermediate holds more than :data:`KERNEL_BLOCK` values."""
        T, c, states = self.length, self.channels, self.A.shape[-1]
        if T * T * c > MAX_KERNEL:
            raise InvalidArgumentError(
                f"the selective kernel of {T} tokens x {c} channels would hold {T * T * c:,} "
                f"values (limit {MAX_KERNEL:,}); use a shorter input"
            )
        block = max(1, KERNEL_BLOCK // (T * T * states))
        parts = [
            self.kernel(slice(lo, min(lo + block, c)), skip=self.skip) for lo in range(0, c, block)
        ]
        return torch.cat(parts, -1)

    def span_rows(self) -> Iterator[torch.Tensor]:
        """The diagonals ``w_ij`` as rows, one per pair ``i >= j``: ``[T (T + 1) / 2, c]``."""
        causal = torch.ones(self.length, self.length, dtype=torch.bool).tril()
        yield self.full_kernel()[causal]


Operators = AttentionOperators | LTIOperators | SelectiveOperators
