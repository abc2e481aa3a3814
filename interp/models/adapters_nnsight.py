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
"""

from __future__ import annotations

from contextlib import ExitStack

import nnsight
import torch

from interp.models.attention import RunPlan, StatsRequest, as_stats_request
from interp.models.hf_compat import cache_argument, first, returned_cache
from interp.models.hooked import HookedLM, Inputs, _check_finite, check_logits_to_keep
from interp.models.hooks import ActivationCache, resolve_hook_names, split_layer_name

# Per-block captures in the order the forward pass reaches them.
_BLOCK_ORDER = ("hook_resid_pre", "attn.hook_z", "hook_attn_out", "hook_mlp_out", "hook_resid_post")


def _envoy(root: object, path: str) -> object:
    """The nnsight envoy at a dotted module path (integers index module lists)."""
    for part in path.split("."):
        root = root[int(part)] if part.isdigit() else getattr(root, part)
    return root


class NNsightLM(HookedLM):
    """HookedLM interface over an nnsight language model; ``envoy`` is the nnsight object."""

    backend = "nnsight"

    def __init__(
        self, envoy: object, tokenizer: object | None = None, *, name: str | None = None
    ) -> None:
        if isinstance(envoy, nnsight.Envoy) and hasattr(envoy, "dispatch"):
            envoy.dispatch()  # a model loaded by name holds meta tensors until dispatched
        module = getattr(envoy, "_module", None)
        if not isinstance(envoy, nnsight.Envoy) or not hasattr(
            getattr(module, "config", None), "model_type"
        ):
            raise TypeError(
                f"expected an nnsight LanguageModel/TransformersModel wrapping a Hugging Face causal LM, "
                f"got {type(envoy).__name__}"
            )
        tokenizer = tokenizer if tokenizer is not None else getattr(envoy, "tokenizer", None)
        if tokenizer is None:
            raise ValueError(
                "this nnsight model has no tokenizer; pass one: load_model(model, tokenizer=tok)"
            )
        super().__init__(module, tokenizer, name=name)
        self.envoy = envoy

    @torch.inference_mode()
    def run(
        self,
        inputs: Inputs,
        capture: str | list[str] | None = None,
        attention_stats: StatsRequest | bool | None = None,
        *,
        attention_mask: torch.Tensor | None = None,
        prepend_bos: bool = True,
        past_key_values: object | None = None,
        use_cache: bool = False,
        logits_to_keep: int = 0,
    ) -> tuple[torch.Tensor, ActivationCache]:
        """Forward pass inside an nnsight trace; same contract as :meth:`HookedLM.run`."""
        check_logits_to_keep(logits_to_keep)
        tokens, attention_mask = self._as_tokens(inputs, attention_mask, prepend_bos)
        past = past_key_values.get_seq_length() if past_key_values is not None else 0
        self.check_length(past + tokens.shape[1])
        names = resolve_hook_names(capture, self.hook_names)
        stats = as_stats_request(attention_stats, self.device)
        self._check_request(names, stats, tokens, past)
        plan = RunPlan(stats=stats)
        for name in names:
            layer, hook = split_layer_name(name)
            if layer is not None and hook.startswith("attn.hook_") and hook != "attn.hook_z":
                plan.capture.setdefault(layer, set()).add(hook.split(".")[1])
        batch = {"input_ids": tokens.to(self.device)}
        if attention_mask is not None:
            batch["attention_mask"] = attention_mask.to(self.device)
        with ExitStack() as stack:
            for probe in self._probes:
                probe.plan = plan
                stack.callback(setattr, probe, "plan", None)
            if past_key_values is not None:
                # Newer transformers call the KV cache `cache` (`past_key_values` deprecated).
                # nnsight knows only the old name when it adds a default mask, which would then
                # cover the new tokens alone: pass the mask over cached + new tokens.
                batch[cache_argument(self.model)] = past_key_values
                width = past + tokens.shape[1]
                ones = torch.ones(tokens.shape[0], width, dtype=torch.long, device=self.device)
                batch.setdefault("attention_mask", ones)
            if logits_to_keep:
                batch["logits_to_keep"] = logits_to_keep
            saved, output = self._trace(batch, set(names), use_cache=use_cache)
        outputs = {**plan.outputs, **saved}
        for name in names:
            layer, suffix = split_layer_name(name)
            if suffix == "hook_resid_mid":
                outputs[name] = (
                    saved[f"blocks.{layer}.hook_resid_pre"] + saved[f"blocks.{layer}.hook_attn_out"]
                )
            elif suffix == "attn.hook_z":
                outputs[name] = saved[name].reshape(
                    *saved[name].shape[:-1], self.n_heads, self.d_head
                )
        cache = ActivationCache({name: outputs[name] for name in names})
        cache.attention_stats = plan.stats_out
        cache.past_key_values = returned_cache(output) if use_cache else None
        _check_finite(output.logits, cache, plan.stats_checks)
        return output.logits, cache

    def _trace(
        self, batch: dict, wanted: set[str], **kwargs
    ) -> tuple[dict[str, torch.Tensor], object]:
        """Run the model in an nnsight trace, saving the module boundaries ``wanted`` needs."""
        arch, envoy = self.arch, self.envoy
        per_layer = [set() for _ in range(self.n_layers)]
        for name in wanted:
            layer, suffix = split_layer_name(name)
            if layer is not None:
                per_layer[layer].add(suffix)
                if suffix == "hook_resid_mid":
                    per_layer[layer] |= {"hook_resid_pre", "hook_attn_out"}
        saved: dict[str, torch.Tensor] = {}
        with envoy.trace(batch, **kwargs):
            if "hook_embed" in wanted:
                saved["hook_embed"] = nnsight.save(_envoy(envoy, arch.embed).output)
            for layer, suffixes in enumerate(per_layer):
                block = _envoy(envoy, f"{arch.layers}.{layer}")
                for suffix in (s for s in _BLOCK_ORDER if s in suffixes):
                    if suffix == "hook_resid_pre":
                        value = block.input
                    elif suffix == "attn.hook_z":
                        value = _envoy(block, arch.o_proj).input
                    elif suffix == "hook_attn_out":
                        value = first(_envoy(block, arch.attn).output)
                    elif suffix == "hook_mlp_out":
                        value = first(_envoy(block, arch.mlp).output)
                    else:
                        value = first(block.output)
                    saved[f"blocks.{layer}.{suffix}"] = nnsight.save(value)
            if "ln_final.hook_normalized" in wanted:
                saved["ln_final.hook_normalized"] = nnsight.save(
                    _envoy(envoy, arch.ln_final).output
                )
            output = nnsight.save(envoy.output)
        return saved, output
