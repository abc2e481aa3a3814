"""`interp models` and `interp capture`."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import typer

from interp.cli_errors import user_errors
from interp.outputs import check_output, write_or_keep


def _safetensors_name(value: Path) -> Path:
    """--out callback: activations are saved as safetensors, so the name must say so."""
    if value is not None and value.suffix != ".safetensors":
        raise typer.BadParameter(
            f"{value} does not end in .safetensors; activations are saved in the safetensors "
            f"format (e.g. --out {value.with_suffix('.safetensors')})"
        )
    return value


def _columns(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    """Plain left-aligned columns: nothing is cut, whatever the terminal's width."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    return "\n".join(lines)


def _provenance(spec: str | None, lm, text: str, tokens, hooks: list[str], names) -> dict:
    """What produced the activations, stored in the safetensors header (strings only)."""
    from interp import __version__
    from interp.models.registry import describe_source

    return {
        "interp_version": __version__,
        "model": str(lm.name),
        "model_source": describe_source(spec),
        "text": text,
        "tokens": json.dumps(tokens[0].tolist()),
        "hooks_requested": json.dumps(hooks),
        "hooks": json.dumps(sorted(names)),
    }


def register(app: typer.Typer) -> None:
    """Add the model commands to the main `interp` app."""

    @app.command("models")
    def models() -> None:
        """List the named models `--model` accepts and the checkpoints already converted locally."""
        from interp.models.registry import ALIASES, REGISTRY, cache_dir, cached_models

        typer.echo("Registry (pass the name to --model):")
        registry = [(name, entry.hf_id) for name, entry in REGISTRY.items()]
        lines = _columns(registry, ("name", "Hugging Face id")).splitlines()
        indent = " " * (max(len(name) for name in REGISTRY) + 2)
        typer.echo(lines[0])
        for line, entry in zip(lines[1:], REGISTRY.values(), strict=True):
            typer.echo(line)
            typer.echo(
                textwrap.fill(
                    entry.description, 80, initial_indent=indent, subsequent_indent=indent
                )
            )
        aliases = ", ".join(f"{a}\0->\0{n}" for a, n in ALIASES.items())  # \0: keep a pair whole
        wrapped = textwrap.fill(f"Aliases: {aliases}", 80, subsequent_indent="  ")
        typer.echo(wrapped.replace("\0", " "))
        typer.echo(f"\nConverted checkpoints in {cache_dir()}:")
        for row in cached_models() or [None]:  # the path on its own line: never cut
            typer.echo(f"{row['name']}  {row['size_mb']} MB\n  {row['path']}" if row else "none")
        typer.echo(
            "\nAlso accepted: a local Hugging Face folder, a .gguf file, or a hub id like\n"
            "'org/name'."
        )

    @app.command("capture")
    def capture(
        text: str = typer.Option(..., "--text", help="Text to run through the model."),
        hook: list[str] = typer.Option(
            ...,
            "--hook",
            help="Activation to save; TransformerLens names or glob patterns, e.g. "
            "'blocks.*.hook_resid_post' or 'blocks.3.attn.hook_z'. Repeat for several. "
            "Attention patterns (attn.hook_pattern) are saved only when named.",
        ),
        out: Path = typer.Option(
            ..., "--out", help="Output .safetensors file.", callback=_safetensors_name
        ),
        model: str = typer.Option(
            None,
            "--model",
            help="Model name, folder, .gguf file or hub id (default: embedded SmolLM2).",
        ),
        no_bos: bool = typer.Option(False, "--no-bos", help="Do not prepend the BOS token."),
        overwrite: bool = typer.Option(
            False, "--overwrite", help="Replace an activations file that interp wrote."
        ),
    ) -> None:
        """Run TEXT through a model and save the chosen activations (and the tokens) as safetensors.

        Example: interp capture --text "The cat sat" --hook 'blocks.*.hook_resid_post' --out
        acts.safetensors

        The file's metadata records the model, its source (path or hub id), the text, the tokens,
        the hooks and the interp version. Bad input (an unknown model or hook, a text longer than
        the context, an existing --out) is reported in one line, with exit status 1.
        """
        check_output(out, overwrite=overwrite)
        from rich.console import Console
        from rich.table import Table
        from safetensors.torch import save_file

        from interp.models.registry import load_model
        from interp.results import write_atomically

        with user_errors():
            lm = load_model(model)
        with user_errors():
            tokens = lm.to_tokens(text, prepend_bos=not no_bos)
            _, cache = lm.run(tokens, capture=hook)
        tensors = {name: value.contiguous().cpu() for name, value in cache.items()}
        metadata = _provenance(model, lm, text, tokens, hook, tensors)
        tensors["tokens"] = tokens.cpu()

        def save(path: Path) -> None:
            write_atomically(
                path, lambda tmp: save_file(tensors, str(tmp), metadata), overwrite=overwrite
            )

        write_or_keep(out, save)
        table = Table(title=f"Saved to {out}")
        table.add_column("activation")
        table.add_column("shape")
        for name, value in tensors.items():
            table.add_row(name, str(tuple(value.shape)))
        Console().print(table)
