"""`interp patch` (activation patching of a clean/corrupted pair) and `interp lens` (the logit
lens of a text), each writing a self-contained HTML report.

Bad input is refused in one line before the patching starts: an answer that is several tokens or
not in the vocabulary, words the tokenizer does not know, clean and corrupted texts of different
token lengths (positions are patched one by one), an unknown site, an existing --out.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from interp.cli_errors import user_errors
from interp.outputs import check_output, write_or_keep

if TYPE_CHECKING:
    from interp.models.protocol import LanguageModel

DEFAULT_SITES = "resid_pre,attn_out,mlp_out"


def check_known_tokens(lm: LanguageModel, text: str, what: str) -> None:
    """Refuse a text with tokens the tokenizer does not know (mapped to its unknown token)."""
    from interp.errors import InvalidArgumentError

    unknown = getattr(lm.tokenizer, "unk_token_id", None)
    if unknown is None:
        return
    ids = lm.tokenizer.encode(text, add_special_tokens=False)
    if unknown in ids:
        words = [
            w for w in text.split() if unknown in lm.tokenizer.encode(w, add_special_tokens=False)
        ]
        raise InvalidArgumentError(
            f"{what} has tokens not in {lm.name}'s vocabulary: {', '.join(map(repr, words)) or text!r}"
        )


def check_pair(lm: LanguageModel, clean: str, corrupted: str) -> int:
    """Token length shared by ``clean`` and ``corrupted`` (refused when they differ)."""
    from interp.errors import InvalidArgumentError

    check_known_tokens(lm, clean, "--clean")
    check_known_tokens(lm, corrupted, "--corrupted")
    a, b = lm.to_str_tokens(clean), lm.to_str_tokens(corrupted)
    if len(a) != len(b):
        raise InvalidArgumentError(
            f"--clean is {len(a)} tokens and --corrupted {len(b)}; positions are patched one by "
            f"one, so they must have the same length (clean {a}, corrupted {b})"
        )
    return len(a)


def _sites(text: str) -> list[str]:
    from interp.patching.sites import SITES

    sites = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in sites if s not in SITES]
    if unknown or not sites:
        raise typer.BadParameter(
            f"unknown site(s) {unknown or text!r}; choose from {', '.join(SITES)}",
            param_hint="--sites",
        )
    return sites


def _load(model: str | None):
    from interp.models.registry import load_model

    with user_errors():
        return load_model(model)


def register(app: typer.Typer) -> None:
    @app.command("patch")
    def patch(
        clean: str = typer.Option(..., "--clean", help="Clean text (the behaviour to explain)."),
        corrupted: str = typer.Option(
            ..., "--corrupted", help="Corrupted text: same number of tokens, the key fact changed."
        ),
        answer: str = typer.Option(..., "--answer", help="Right answer: one token (' Mary')."),
        wrong: str = typer.Option(..., "--wrong", help="Wrong answer: one token (' John')."),
        out: Path = typer.Option(..., "--out", help="Output HTML report."),
        sites: str = typer.Option(
            DEFAULT_SITES,
            "--sites",
            help="Comma-separated sites: resid_pre, attn_out, mlp_out, z...",
        ),
        model: str = typer.Option(
            None, "--model", help="Model name, folder, .gguf file or hub id (default: embedded)."
        ),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace a report interp wrote."),
    ) -> None:
        """Activation patching: run CORRUPTED, patch each (layer, position) of each site with its
        value on CLEAN, and report the logit difference ANSWER - WRONG at the last token.

        Example: interp patch --clean "When Mary and John went to the store, John gave a drink to"
        --corrupted "When Mary and John went to the store, Mary gave a drink to" --answer " Mary"
        --wrong " John" --out patch.html
        """
        chosen = _sites(sites)
        check_output(out, overwrite=overwrite)
        lm = _load(model)
        from interp.patching import activation_patching, logit_diff
        from interp.patching.answers import token_id
        from interp.viz import Report

        with user_errors():
            check_pair(lm, clean, corrupted)
            token_id(lm, answer, "--answer")
            token_id(lm, wrong, "--wrong")
            metric = logit_diff(lm, answer, wrong)
            results = activation_patching(lm, clean, corrupted, metric, sites=chosen)
        report = Report(f"Activation patching — {lm.name}")
        first = next(iter(results.values()))
        report.text(f"clean: {clean!r}   corrupted: {corrupted!r}")
        report.text(
            f"logit difference {answer!r} - {wrong!r}: clean {float(first.clean_metric.mean()):+.4f}, "
            f"corrupted {float(first.corrupted_metric.mean()):+.4f}"
        )
        for site, result in results.items():
            report.heading(site)
            report.figure(result.figure())
            report.preformatted(result.table())
        write_or_keep(out, lambda path: report.write(path, overwrite=overwrite))
        typer.echo(f"wrote {out}")

    @app.command("lens")
    def lens(
        text: str = typer.Option(..., "--text", help="Text to read layer by layer."),
        out: Path = typer.Option(..., "--out", help="Output HTML report."),
        target: list[str] = typer.Option(
            [], "--target", help="A token whose probability to follow (one token; repeatable)."
        ),
        k: int = typer.Option(5, "--k", min=1, help="Top tokens kept per layer and position."),
        model: str = typer.Option(
            None, "--model", help="Model name, folder, .gguf file or hub id (default: embedded)."
        ),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace a report interp wrote."),
    ) -> None:
        """Logit lens: every layer's residual through the final norm and unembedding; the top
        token per layer and position, and the probability of each --target.

        Example: interp lens --text "The Eiffel Tower is in the city of" --target " Paris"
        --out lens.html
        """
        check_output(out, overwrite=overwrite)
        lm = _load(model)
        from interp.patching import logit_lens
        from interp.viz import Report

        with user_errors():
            check_known_tokens(lm, text, "--text")
            result = logit_lens(lm, text, targets=target, k=k)
        report = Report(f"Logit lens — {lm.name}")
        report.text(f"text: {text!r}")
        report.figure(result.figure())
        for i in range(len(target)):
            report.figure(result.figure(target=i))
        report.preformatted(result.table())
        write_or_keep(out, lambda path: report.write(path, overwrite=overwrite))
        typer.echo(f"wrote {out}")
