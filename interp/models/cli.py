"""`interp models` and `interp capture`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from interp.cli_errors import fail, user_errors


def register(app: typer.Typer) -> None:
    """Add the model commands to the main `interp` app."""

    @app.command("models")
    def models() -> None:
        """List the named models `--model` accepts and the checkpoints already converted locally."""
        from interp.models.registry import ALIASES, REGISTRY, cache_dir, cached_models

        console = Console()
        table = Table(title="Registry (pass the name to --model)")
        for column in ("name", "Hugging Face id", "description"):
            table.add_column(column)
        for name, entry in REGISTRY.items():
            table.add_row(name, entry.hf_id, entry.description)
        console.print(table)
        console.print("Aliases: " + ", ".join(f"{a} -> {n}" for a, n in ALIASES.items()))
        cached = Table(title=f"Converted checkpoints in {cache_dir()}")
        for column in ("name", "path", "size (MB)"):
            cached.add_column(column)
        for row in cached_models():
            cached.add_row(row["name"], row["path"], row["size_mb"])
        console.print(cached)
        console.print(
            "Also accepted: a local Hugging Face folder, a .gguf file, or a hub id like 'org/name'."
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
        out: Path = typer.Option(..., "--out", help="Output .safetensors file."),
        model: str = typer.Option(
            None,
            "--model",
            help="Model name, folder, .gguf file or hub id (default: embedded SmolLM2).",
        ),
        no_bos: bool = typer.Option(False, "--no-bos", help="Do not prepend the BOS token."),
        overwrite: bool = typer.Option(
            False, "--overwrite", help="Replace an existing output file."
        ),
    ) -> None:
        """Run TEXT through a model and save the chosen activations (and the tokens) as safetensors.

        Example:
        interp capture --text "The cat sat" --hook 'blocks.*.hook_resid_post' --out acts.safetensors

        Bad input (an unknown model or hook, a text longer than the context, an existing --out)
        is reported in one line, with exit status 1.
        """
        from safetensors.torch import save_file

        from interp.models.registry import load_model
        from interp.results import write_atomically

        if out.exists() and not overwrite:
            fail(f"{out} already exists; pass --overwrite or choose another --out")
        with user_errors():
            lm = load_model(model)
            tokens = lm.to_tokens(text, prepend_bos=not no_bos)
            _, cache = lm.run(tokens, capture=hook)
        tensors = {name: value.contiguous().cpu() for name, value in cache.items()}
        tensors["tokens"] = tokens.cpu()
        write_atomically(out, lambda tmp: save_file(tensors, str(tmp)), overwrite=overwrite)
        console = Console()
        table = Table(title=f"Saved to {out}")
        table.add_column("activation")
        table.add_column("shape")
        for name, value in tensors.items():
            table.add_row(name, str(tuple(value.shape)))
        console.print(table)
