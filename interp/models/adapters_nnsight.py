"""nnsight adapter: a HookedLM view of an nnsight ``LanguageModel`` / ``TransformersModel``.

The split of work:

- Module-level activations (embeddings, residual stream, ``hook_attn_out``, ``hook_mlp_out``,
  ``attn.hook_z`` as the input of the output projection, the final norm's output) and the
  logits come from nnsight's own trace: ``envoy.output.save()`` / ``envoy.input.save()`` on the
  Hugging Face modules, read in forward order as nnsight requires.
- What nnsight cannot see as a module boundary (post-rotary per-head q/k/v, the attention
  pattern and the fused attention statistics) comes from the native backend's attention probe:
  the registered ``"interp"`` attention function runs inside the very forward pass that nnsight
  traces, on the same underlying module. Weights, norms and the MLP are read from that module
  through the native family table.

Wrapping switches the underlying model's attention implementation to ``"interp"`` (SDPA
numerics), which the nnsight object shares.

nnsight 0.8 deprecates ``LanguageModel`` in favour of ``TransformersModel(..., task=
"text-generation")``; both are accepted, and nnsight's deprecation warnings
(``NNsightDeprecationWarning``, a ``FutureWarning``) raised while wrapping or tracing are silenced,
so none reaches the user from ``load_model`` or ``run``.

Remote execution (``run(..., remote=True)``) ships the trace to NDIF; the API key is nnsight's own
(``nnsight.CONFIG.API.APIKEY`` or ``NDIF_API_KEY``) and interp never reads, prints or stores it.
NDIF runs its own copy of the model, without interp's attention probe or hooks, so remotely only
module boundaries are captured: post-rotary q/k/v, patterns, attention statistics and edits are
refused there in one line. ``remote="local"`` is nnsight's serverless dry run of the same path
(the trace is serialized and deserialized with local modules hidden, then run here): it tests that
a request would ship.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from contextlib import ExitStack

import nnsight
import torch

from interp.errors import InputTypeError, InvalidArgumentError, UnsupportedModelError
from interp.models.hf_compat import cache_argument, first, returned_cache
from interp.models.hooked import Forward
from interp.models.hooks import split_layer_name
from interp.models.native import NativeLM

# Per-block captures in the order the forward pass reaches them.
_BLOCK_ORDER = (
    "hook_resid_pre",
    "attn.hook_z",
    "hook_attn_out",
    "mlp.hook_router_logits",
    "hook_mlp_out",
    "hook_resid_post",
)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence nnsight's deprecation warnings (and plain DeprecationWarnings) inside the block."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        category = getattr(nnsight, "NNsightDeprecationWarning", None)
        if category is not None:
            warnings.simplefilter("ignore", category)
        yield


def _envoy(root: object, path: str) -> object:
    """The nnsight envoy at a dotted module path (integers index module lists)."""
    for part in path.split("."):
        root = root[int(part)] if part.isdigit() else getattr(root, part)
    return root


class NNsightLM(NativeLM):
    """The native backend's interface over an nnsight model (``TransformersModel`` or the
    deprecated ``LanguageModel``); ``envoy`` is the nnsight object. Only the forward pass differs:
    it runs inside nnsight's trace (``run(..., remote=True)`` executes it on NDIF; ``remote=
    "local"`` serializes it and runs it here, nnsight's offline test of the remote path)."""

    backend = "nnsight"

    def __init__(
        self, envoy: object, tokenizer: object | None = None, *, name: str | None = None
    ) -> None:
        if isinstance(envoy, nnsight.Envoy) and hasattr(envoy, "dispatch"):
            with _quiet():
                envoy.dispatch()  # a model loaded by name holds meta tensors until dispatched
        module = getattr(envoy, "_module", None)
        if not isinstance(envoy, nnsight.Envoy) or not hasattr(
            getattr(module, "config", None), "model_type"
        ):
            raise InputTypeError(
                "expected an nnsight TransformersModel/LanguageModel wrapping a Hugging Face "
                f"causal LM, got {type(envoy).__name__}"
            )
        tokenizer = tokenizer if tokenizer is not None else getattr(envoy, "tokenizer", None)
        if tokenizer is None:
            raise InvalidArgumentError(
                "this nnsight model has no tokenizer; pass one: load_model(model, tokenizer=tok)"
            )
        with _quiet():
            super().__init__(module, tokenizer, name=name)
        self.envoy = envoy
        self.remote: bool | str = False

    def run(self, *args, remote: bool | str = False, **kwargs):
        """:meth:`HookedLM.run` inside an nnsight trace.

        ``remote=True`` runs the trace on NDIF (nnsight's own API key configuration; module
        boundaries only: ``attn.hook_q/k/v/pattern``, ``attention_stats`` and edits need interp's
        probe and hooks, which NDIF's copy of the model does not have). ``remote="local"`` runs
        nnsight's offline test of the remote path: the trace is serialized, deserialized with
        local modules hidden, and run here (everything is available, as in a local run)."""
        if remote not in (False, True, "local"):
            raise InvalidArgumentError(f"remote must be False, True or 'local', got {remote!r}")
        self.remote = remote
        try:
            return super().run(*args, **kwargs)
        finally:
            self.remote = False

    def _forward(self, request: Forward) -> tuple[torch.Tensor, object | None]:
        plan = request.plan
        batch = {"input_ids": request.tokens}
        if request.attention_mask is not None:
            batch["attention_mask"] = request.attention_mask
        kv = request.past_key_values
        if kv is not None:
            # Newer transformers call the KV cache `cache` (`past_key_values` deprecated).
            # nnsight knows only the old name when it adds a default mask, which would then
            # cover the new tokens alone: pass the mask over cached + new tokens.
            batch[cache_argument(self.model)] = kv
            width = kv.get_seq_length() + request.tokens.shape[1]
            ones = torch.ones(request.tokens.shape[0], width, dtype=torch.long)
            batch.setdefault("attention_mask", ones.to(request.tokens.device))
        positions = request.position_ids()
        if positions is not None:
            batch["position_ids"] = positions
        if request.logits_to_keep:
            batch["logits_to_keep"] = request.logits_to_keep
        # Edits go through the same PyTorch hooks as the native backend (the traced module is the
        # same module); an edited hook is captured there too, so the capture sees the edit.
        edited = [name for name in request.names if name in plan.edits]
        if self.remote is True and (plan.capture or plan.stats is not None or plan.edits):
            raise UnsupportedModelError(
                "remote=True runs on NDIF's copy of the model, which has no interp attention "
                "probe or hooks: attn.hook_q/hook_k/hook_v/hook_pattern, attention_stats and "
                "edits are available locally only (remote=False, or remote='local' to test the "
                "request)"
            )
        with ExitStack() as stack:
            self._install(stack, request, captures=edited)
            wanted = set(request.names) - set(edited)
            saved, output = self._trace(batch, wanted, use_cache=request.use_cache)
        plan.outputs.update(saved)
        return output.logits, returned_cache(output) if request.use_cache else None

    def _trace(
        self, batch: dict, wanted: set[str], **kwargs
    ) -> tuple[dict[str, torch.Tensor], object]:
        """Run the model in an nnsight trace, saving the module boundaries ``wanted`` needs."""
        family, envoy = self.family, self.envoy
        per_layer = [set() for _ in range(self.n_layers)]
        for name in wanted:
            layer, suffix = split_layer_name(name)
            if layer is not None:
                per_layer[layer].add(suffix)
        saved: dict[str, torch.Tensor] = {}
        remote = {"remote": self.remote} if self.remote else {}
        # Nested on purpose: nnsight reads the trace block's source from the inner `with`.
        with _quiet():  # noqa: SIM117
            with envoy.trace(batch, **kwargs, **remote):
                if "hook_embed" in wanted:
                    saved["hook_embed"] = nnsight.save(_envoy(envoy, family.embed).output)
                if "hook_pos_embed" in wanted:
                    saved["hook_pos_embed"] = nnsight.save(_envoy(envoy, family.positions).output)
                for layer, suffixes in enumerate(per_layer):
                    block = _envoy(envoy, f"{family.layers}.{layer}")
                    for suffix in (s for s in _BLOCK_ORDER if s in suffixes):
                        saved[f"blocks.{layer}.{suffix}"] = nnsight.save(
                            self._boundary(block, suffix)
                        )
                if "ln_final.hook_normalized" in wanted:
                    saved["ln_final.hook_normalized"] = nnsight.save(
                        _envoy(envoy, family.ln_final).output
                    )
                output = nnsight.save(envoy.output)
        return self._scaled(saved), output

    def _boundary(self, block: object, suffix: str) -> object:
        """The traced value of one per-block hook (unscaled; see :meth:`_scaled`)."""
        family = self.family
        if suffix == "hook_resid_pre":
            return block.input
        if suffix == "attn.hook_z":
            return _envoy(block, family.o_proj).input
        # copies: a parallel block may add into a sublayer output in place (Falcon)
        if suffix == "hook_attn_out":
            return first(_envoy(block, family.attn_out_norm or family.attn).output).clone()
        if suffix == "hook_mlp_out":
            return first(_envoy(block, family.mlp_out_norm or family.mlp).output).clone()
        if suffix == "mlp.hook_router_logits":
            return first(_envoy(block, family.router).output)
        return first(block.output)

    def _scaled(self, saved: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Apply the family's embedding and residual multipliers, as the native hooks do."""
        from interp.models.families import scalar

        embed = scalar(self.family.embed_multiplier, self.config)
        residual = scalar(self.family.residual_multiplier, self.config)
        out = {}
        for name, value in saved.items():
            value = first(value) if isinstance(value, tuple) else value
            if name == "hook_embed" and embed is not None:
                value = value * embed
            elif name.endswith(("hook_attn_out", "hook_mlp_out")) and residual is not None:
                value = value * residual
            out[name] = value.detach()
        return out
