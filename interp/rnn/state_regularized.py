"""State-regularized GRU (Wang & Niepert 2019): every state is pulled toward one of k learned
centroids, so the network's state space is already quantized and an automaton can be read off.

One step: the GRU update ``u_t = GRU(h_{t-1}, x_t)``, then attention over the centroids
``S [k, H]``: ``α = softmax(u_t · Sᵀ / τ)`` and the new state ``h_t = α S``. At small temperature
``τ`` the state sits on (nearly) one centroid; extraction (``method="centroids"`` in
:func:`interp.rnn.extraction.extract_automaton`) reads ``argmax α`` as the automaton state and
applies the output layer to each centroid to decide which states accept.

``straight_through=True`` makes the forward pass hard: ``h_t`` is exactly the centroid with the
largest α, while gradients flow through the soft α (straight-through estimator). Measured here
(Tomita 4 and 7, GRU update of 10 units, 10 centroids, τ = 1): the soft cell learns the task but
keeps ``argmax α`` on one centroid for several automaton states and tells them apart by small
changes of the mixture, so argmax extraction under-counts states; lowering τ to 0.1 or below
stalls training (all inputs pick one centroid). With ``straight_through`` the state space is finite
by construction and centroid extraction agrees with the net on every tested string.

The straight-through gradient is a training device: in eval mode the hard step is the function it
computes, ``h_t = S[argmax α]``, piecewise constant in ``h_{t-1}``, so its Jacobian is 0 and every
centroid that maps to itself under an input is a (super)stable fixed point there. The forward
values are the same in both modes.

Registered as the net kind ``"state_regularized"``:
``make_net("state_regularized", I, H, O, n_centroids=8, temperature=0.5)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from interp.models.recurrent import gru_cell
from interp.rnn.nets import RecurrentNet, _uniform, register_net


class StateRegularizedNet(RecurrentNet):
    """GRU whose state is a convex combination of ``n_centroids`` learned centroids.

    Args:
        n_centroids: the number k of centroids (an upper bound on the automaton's state count).
        temperature: τ of the centroid softmax (> 0); lower = harder assignment.
        straight_through: forward with the one-hot argmax α; in training mode gradients flow
            through the soft α (straight-through), in eval mode through nothing (the hard step).
    """

    kind = "state_regularized"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        *,
        n_centroids: int = 10,
        temperature: float = 0.5,
        straight_through: bool = False,
    ) -> None:
        if not isinstance(n_centroids, int) or n_centroids < 1:
            raise ValueError(f"n_centroids must be a positive int, got {n_centroids!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        super().__init__(
            input_size,
            hidden_size,
            output_size,
            n_centroids=n_centroids,
            temperature=temperature,
            straight_through=straight_through,
        )
        self.n_centroids, self.temperature = n_centroids, float(temperature)
        self.straight_through = bool(straight_through)
        bound = 1 / math.sqrt(hidden_size)
        self.weight_ih = _uniform(3 * hidden_size, input_size, bound=bound)
        self.weight_hh = _uniform(3 * hidden_size, hidden_size, bound=bound)
        self.bias_ih = _uniform(3 * hidden_size, bound=bound)
        self.bias_hh = _uniform(3 * hidden_size, bound=bound)
        self.centroid_weights = nn.Parameter(torch.empty(n_centroids, hidden_size).uniform_(-1, 1))

    @property
    def centroids(self) -> Tensor:
        """The centroid matrix ``S [k, H]``."""
        return self.centroid_weights

    def step_with_attention(self, h: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """One step returning ``(h_next [B, H], α [B, k])``."""
        update = gru_cell(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        alpha = torch.softmax(update @ self.centroid_weights.T / self.temperature, dim=-1)
        if self.straight_through:
            # one-hot of the argmax by comparison (F.one_hot has no vmap rule, and torch.func
            # transforms must work on step for fixed points and Jacobians)
            index = torch.arange(self.n_centroids, device=alpha.device)
            hard = (index == alpha.argmax(dim=-1, keepdim=True)).to(alpha.dtype)
            alpha = hard + alpha - alpha.detach() if self.training else hard
        return alpha @ self.centroid_weights, alpha

    def step(self, h: Tensor, x: Tensor) -> Tensor:
        return self.step_with_attention(h, x)[0]


register_net("state_regularized", StateRegularizedNet)
