"""Endpoint defaults, apart from the provider modules, which are loaded only when a model of
theirs is first used."""

from __future__ import annotations

from typing import Final, Literal

__all__ = ["DEFAULT_ANTHROPIC_BASE_URL", "DEFAULT_OPENAI_BASE_URL", "MaxTokensField"]

DEFAULT_ANTHROPIC_BASE_URL: Final = "https://api.anthropic.com"
DEFAULT_OPENAI_BASE_URL: Final = "https://api.openai.com/v1"
MaxTokensField = Literal["max_completion_tokens", "max_tokens"]
