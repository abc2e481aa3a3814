"""Result objects: raw numbers plus the settings that produced them, saved atomically.

Every analyzer returns a dataclass that inherits :class:`Result`. Tensor and array fields (and
dicts of them) go to one safetensors file; everything else goes to JSON. ``save`` writes into a
temporary folder and renames it into place, so a crash never leaves half a result, and it refuses
to overwrite an existing result unless asked to.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from interp import __version__
from interp.outputs import write_atomically

R = TypeVar("R", bound="Result")

_ARRAYS = "arrays.safetensors"
_META = "result.json"


def _to_tensor(value: Any) -> torch.Tensor:
    tensor = torch.as_tensor(value) if isinstance(value, np.ndarray) else value
    return tensor.detach().cpu().contiguous()


def _is_array(value: Any) -> bool:
    return isinstance(value, torch.Tensor | np.ndarray)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


@dataclasses.dataclass
class Result:
    """Base class: subclasses are dataclasses whose fields are arrays, dicts of arrays or JSON.

    ``repr(result)`` / ``print(result)`` show a summary (type, each field as a shape or a short
    value, the first lines of ``table()``; under 2,000 characters), never the raw tensors.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Put the summary in the subclass's own namespace before @dataclass runs: the decorator
        # adds its field-by-field __repr__ only where the class does not define one.
        super().__init_subclass__(**kwargs)
        if "__repr__" not in cls.__dict__:
            cls.__repr__ = Result.__repr__

    def __repr__(self) -> str:
        from interp.result_summary import summary

        return summary(self)

    def __str__(self) -> str:
        return repr(self)  # a subclass's own __repr__ (e.g. DFA's one line) prints too

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the result as a folder holding ``result.json`` and ``arrays.safetensors``."""
        arrays: dict[str, torch.Tensor] = {}
        meta: dict[str, Any] = {}
        kinds: dict[str, str] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if _is_array(value):
                arrays[field.name] = _to_tensor(value)
                kinds[field.name] = "numpy" if isinstance(value, np.ndarray) else "torch"
            elif isinstance(value, dict) and value and all(_is_array(v) for v in value.values()):
                for key, item in value.items():
                    arrays[f"{field.name}/{key}"] = _to_tensor(item)
                kinds[field.name] = "dict-numpy" if _is_array_np(value) else "dict-torch"
            else:
                meta[field.name] = _jsonable(value)
        document = {
            "type": type(self).__name__,
            "interp_version": __version__,
            "fields": meta,
            "array_kinds": kinds,
        }

        def write(tmp: Path) -> None:
            tmp.mkdir()
            save_file(arrays, str(tmp / _ARRAYS))
            (tmp / _META).write_text(json.dumps(document, indent=2))

        return write_atomically(path, write, overwrite=overwrite)

    @classmethod
    def load(cls: type[R], path: str | os.PathLike) -> R:
        """Read a result written by :meth:`save`."""
        path = Path(path)
        if not (path / _META).exists():
            raise FileNotFoundError(f"{path} is not a saved result (no {_META} inside)")
        document = json.loads((path / _META).read_text())
        if document["type"] != cls.__name__:
            raise TypeError(f"{path} holds a {document['type']}, not a {cls.__name__}")
        tensors = load_file(str(path / _ARRAYS))
        values: dict[str, Any] = dict(document["fields"])
        for name, kind in document["array_kinds"].items():
            if kind.startswith("dict"):
                prefix = f"{name}/"
                value: Any = {
                    k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)
                }
                if kind == "dict-numpy":
                    value = {k: v.numpy() for k, v in value.items()}
            else:
                value = tensors[name].numpy() if kind == "numpy" else tensors[name]
            values[name] = value
        return cls(**values)


def _is_array_np(value: dict) -> bool:
    return all(isinstance(v, np.ndarray) for v in value.values())
