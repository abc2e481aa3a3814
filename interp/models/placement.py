"""Where a loaded model lives: device maps, dtypes, and the checks made before loading.

``load_model(spec, device_map=..., max_memory=..., dtype=..., offload_folder=...)`` loads through
accelerate (transformers' ``from_pretrained(device_map=...)``): decoder layers may sit on several
GPUs, on the CPU or offloaded to disk, and accelerate's hooks move each layer's inputs to the
layer's device and its offloaded weights in and out. Every device a map names and the dtype are
checked here first, so a map naming a GPU the machine lacks, or a dtype the device cannot compute
in, fails in one line before any weight is read.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from interp.errors import DeviceError, InputTypeError, InvalidArgumentError

AUTO_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
}
_DTYPE_ALIASES = {"fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16"}
_DTYPE_ALIASES |= {"float": "float32", "double": "float64", "fp64": "float64"}
_ACCEPTED_DTYPES = "float32, bfloat16, float16, float64 (torch dtypes or their names)"


def resolve_dtype(dtype: object) -> torch.dtype | None:
    """A torch floating dtype from ``dtype`` (a ``torch.dtype`` or a name like ``"bfloat16"``)."""
    if dtype is None:
        return None
    if isinstance(dtype, str):
        key = dtype.lower().removeprefix("torch.")
        key = _DTYPE_ALIASES.get(key, key)
        if key not in DTYPES:
            raise InvalidArgumentError(f"unknown dtype {dtype!r}; accepted: {_ACCEPTED_DTYPES}")
        return DTYPES[key]
    if not isinstance(dtype, torch.dtype):
        raise InputTypeError(
            f"dtype must be a torch dtype or its name, got {type(dtype).__name__}; "
            f"accepted: {_ACCEPTED_DTYPES}"
        )
    if not dtype.is_floating_point:
        raise InvalidArgumentError(
            f"dtype {dtype} is not a floating-point dtype: model weights and activations need "
            f"one; accepted: {_ACCEPTED_DTYPES}"
        )
    return dtype


def available_devices() -> list[str]:
    """The devices this machine has, as accepted in a device map (``"disk"``: offload)."""
    names = ["cpu", "disk"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        names.append("mps")
    return names


def check_device(device: object, where: str = "device") -> torch.device | str:
    """``device`` as a ``torch.device`` (``"disk"`` kept as the string) if this machine has it.

    An integer is a CUDA index, as in accelerate's device maps.
    """
    available = available_devices()
    if isinstance(device, bool) or not isinstance(device, str | int | torch.device):
        raise InputTypeError(
            f"{where} must be a device name, an index or a torch.device, got "
            f"{type(device).__name__}; available here: {', '.join(available)}"
        )
    if device == "disk":
        return "disk"
    try:
        parsed = torch.device(f"cuda:{device}" if isinstance(device, int) else device)
    except (RuntimeError, ValueError):
        raise DeviceError(
            f"{where} names {device!r}, which is not a device; available here: "
            f"{', '.join(available)}"
        ) from None
    name = str(parsed if parsed.type != "cuda" or parsed.index is not None else "cuda:0")
    if name not in available and parsed.type not in ("cpu", "meta"):
        raise DeviceError(
            f"{where} names {device!r}, which this machine does not have; available here: "
            f"{', '.join(available)}"
        )
    if parsed.type == "meta":
        raise DeviceError(f"{where} names 'meta', which holds no weights; use 'disk' to offload")
    return parsed


def check_device_map(device_map: object) -> str | dict[str, object] | None:
    """Validate a ``device_map`` for ``from_pretrained``: one of :data:`AUTO_MAPS`, or a dict
    ``{module path: device}`` whose devices all exist here (``"disk"`` offloads)."""
    if device_map is None or device_map in AUTO_MAPS:
        return device_map
    if isinstance(device_map, str):
        raise InvalidArgumentError(
            f"device_map must be one of {', '.join(AUTO_MAPS)} or a dict {{module path: device}}, "
            f"got {device_map!r}; for one device pass device={device_map!r}"
        )
    if not isinstance(device_map, Mapping) or not device_map:
        raise InputTypeError(
            f"device_map must be one of {', '.join(AUTO_MAPS)} or a non-empty dict "
            f"{{module path: device}}, got {type(device_map).__name__}"
        )
    checked: dict[str, object] = {}
    for path, device in device_map.items():
        if not isinstance(path, str):
            raise InputTypeError(f"device_map keys are module paths (str), got {path!r}")
        value = check_device(device, f"device_map[{path!r}]")
        checked[path] = value if isinstance(value, str) else str(value)
    return checked


def map_devices(device_map: str | dict[str, object] | None) -> list[torch.device]:
    """The compute devices a (checked) map uses: disk-offloaded layers compute on the CPU; an
    automatic map may use every GPU and the CPU."""
    if device_map is None:
        return []
    if isinstance(device_map, str):
        names = [d for d in available_devices() if d not in ("disk",)]
    else:
        names = ["cpu" if d == "disk" else str(d) for d in device_map.values()]
    return [torch.device(n) for n in dict.fromkeys(names)]


def check_dtype_runs(dtype: torch.dtype | None, devices: list[torch.device]) -> None:
    """Refuse a dtype a device cannot compute in (float8 on a CPU: no negation, no softmax),
    by running the operations a decoder layer needs on a 2 x 2 tensor there."""
    if dtype is None:
        return
    for device in devices:
        try:
            x = torch.ones(2, 2, device=device).to(dtype)
            y = torch.softmax(x @ x, dim=-1) * torch.rsqrt((-x).pow(2).mean(-1, keepdim=True))
            torch.nn.functional.silu(y).exp().sum().item()
        except (RuntimeError, NotImplementedError, TypeError) as error:
            reason = " ".join(str(error).split())[:120]
            raise DeviceError(
                f"dtype {dtype} cannot run on {device} ({reason}); use float32, or bfloat16 / "
                "float16 to halve the memory"
            ) from None


def input_device(model: nn.Module) -> torch.device:
    """The device a model's input ids go to: its input embedding's (execution) device.

    For a model dispatched by accelerate the first parameter may live on another GPU, or on
    ``meta`` when offloaded; the embedding's hook names where it computes. This is the accessor
    for ``NativeLM.device`` (today ``next(model.parameters()).device``, which is the same
    device for every model whose embedding is its first parameter and is resident).
    """
    embed = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if embed is None:
        return next(model.parameters()).device
    hook = getattr(embed, "_hf_hook", None)
    execution = getattr(hook, "execution_device", None)
    if execution is not None:
        return torch.device(execution if not isinstance(execution, int) else f"cuda:{execution}")
    return embed.weight.device
