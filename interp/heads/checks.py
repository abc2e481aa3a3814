"""Argument checks shared by the head finders (the protocol's own check, under the name the
head finders use)."""

from __future__ import annotations

from interp.models.protocol import check_language_model as check_model

__all__ = ["check_model"]
