"""typer's option coercion without importing pydantic when a value already has its type.

typer 0.29 coerces every parameter through a pydantic TypeAdapter that it builds on first use,
and importing pydantic plus building the adapters is about a third of a command's start-up
(`clawmesh route`). For a `str`, `list[str]` or `bool` parameter whose value from the command
line already is a str / list of str / bool, that adapter returns the value unchanged (typer's
`_parse_cli_str` is `str(value)`, `_parse_cli_bool` passes non-strings through); so such values
are returned as they are, and anything else (every other annotation, a custom parser, a file,
a bool given as text) goes to typer's own coercion, built when first needed. typer is pinned in
pyproject.toml; tests/unit/test_cli_lazy.py checks both give the same values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, get_args, get_origin

import typer.core
from typer import _coercion
from typer._click import Context

__all__ = ["install"]

_typer_build = _coercion.build_runtime_param


def _is_str_list(annotation: Any) -> bool:
    return get_origin(annotation) is list and get_args(annotation) == (str,)


def _has_type(value: Any, annotation: Any) -> bool:
    if annotation is str or annotation is bool:
        return type(value) is annotation
    if _is_str_list(annotation):
        return isinstance(value, (list, tuple)) and all(type(v) is str for v in value)
    return False


@dataclass(frozen=True)
class _Deferred(_coercion.RuntimeParam):
    descriptor: _coercion.TypeDescriptor
    _built: list[_coercion.RuntimeParam] = field(default_factory=list)

    def _coerce_value(self, value: Any, param: Any, ctx: Context) -> Any:
        if _has_type(value, self.annotation):
            return list(value) if isinstance(value, tuple) else value
        if not self._built:
            self._built.append(_typer_build(self.descriptor))
        return self._built[0]._coerce_value(value, param=param, ctx=ctx)


def _build(descriptor: _coercion.TypeDescriptor) -> _coercion.RuntimeParam:
    annotation: Any = descriptor.annotation
    simple = annotation is str or annotation is bool or _is_str_list(annotation)
    if simple and descriptor.file_annotation is None and descriptor.parameter_info.parser is None:
        return _Deferred(
            parameter_info=descriptor.parameter_info, annotation=annotation, descriptor=descriptor
        )
    return _typer_build(descriptor)


def install() -> None:
    """Use this for every typer parameter built from now on (idempotent)."""
    typer.core.build_runtime_param = _build  # type: ignore[attr-defined]
