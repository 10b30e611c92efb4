"""Rendering dbt's ``{{ env_var('NAME') }}`` and ``{{ env_var('NAME', 'default') }}`` in loaded YAML.

Only ``env_var`` is supported (no other Jinja): it is what profiles and models need, and rendering
arbitrary templates from a config file would be a needless attack surface. dbt's type filters are
understood when the expression is the whole value: ``| int`` and ``| as_number`` give a number,
``| as_bool`` a boolean, ``| string``/``| as_text`` text. Any other expression or filter is reported
as a config error naming the file, the key and the expression.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sixtyfour_sync.errors import ConfigError, ConfigProblem

__all__ = ["render_env_vars"]

_EXPR = re.compile(r"\{\{(?P<body>.*?)\}\}", re.DOTALL)
_ENV_VAR = re.compile(
    r"""^\s*env_var\(\s*
        (?P<q>['"])(?P<name>[^'"]*)(?P=q)\s*
        (?:,\s*(?:(?P<dq>['"])(?P<default>.*?)(?P=dq)|(?P<num>-?\d+(?:\.\d+)?)|(?P<none>none|None))\s*)?
        \)\s*
        (?P<filters>(?:\|\s*[A-Za-z_]+\s*)*)$""",
    re.VERBOSE | re.DOTALL,
)
_NUMBER_FILTERS = {"int", "as_number", "float"}
_BOOL_FILTERS = {"as_bool", "bool"}
_TEXT_FILTERS = {"string", "as_text", "trim"}
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _path_text(path: tuple[str | int, ...]) -> str | None:
    return ".".join(str(p) for p in path) or None


def _convert(value: str, filters: list[str], expr: str, where: _Where) -> Any:
    out: Any = value
    for f in filters:
        if f in _TEXT_FILTERS:
            out = str(out).strip() if f == "trim" else str(out)
        elif f in _NUMBER_FILTERS:
            text = str(out).strip()
            try:
                out = int(text) if f == "int" or re.fullmatch(r"-?\d+", text) else float(text)
            except ValueError:
                where.problem(f"{expr}: {value!r} is not a number")
                return value
        elif f in _BOOL_FILTERS:
            text = str(out).strip().lower()
            if text in _TRUE:
                out = True
            elif text in _FALSE:
                out = False
            else:
                where.problem(f"{expr}: {value!r} is not a boolean (use true/false)")
                return value
        else:
            where.problem(
                f"{expr}: unsupported filter {f!r}",
                hint="supported filters: int, as_number, as_bool, string, as_text",
            )
            return value
    return out


class _Where:
    def __init__(self, file: str, path: tuple[str | int, ...], problems: list[ConfigProblem]) -> None:
        self.file = file
        self.path = path
        self.problems = problems

    def problem(self, message: str, hint: str | None = None) -> None:
        self.problems.append(ConfigProblem(self.file, _path_text(self.path), message, hint=hint))


def _render_string(text: str, env: Mapping[str, str], where: _Where) -> Any:
    if "{{" not in text:
        return text
    matches = list(_EXPR.finditer(text))
    whole = len(matches) == 1 and matches[0].group(0) == text.strip()

    def value_of(m: re.Match[str]) -> tuple[Any, bool]:
        body = m.group("body")
        expr = "{{" + body + "}}"
        em = _ENV_VAR.match(body)
        if em is None:
            where.problem(
                f"unsupported template expression {expr.strip()!r}",
                hint="only {{ env_var('NAME') }} and {{ env_var('NAME', 'default') }} are supported",
            )
            return m.group(0), False
        name = em.group("name")
        if name in env:
            raw: Any = env[name]
        elif em.group("default") is not None:
            raw = em.group("default")
        elif em.group("num") is not None:
            raw = em.group("num")
        elif em.group("none") is not None:
            raw = None
        else:
            where.problem(
                f"environment variable {name!r} is not set (used in {expr.strip()})",
                hint=f"export {name}=... or give a default: {{{{ env_var('{name}', 'value') }}}}",
            )
            return m.group(0), False
        filters = [f.strip() for f in em.group("filters").split("|") if f.strip()]
        if raw is None:
            return None, True
        return _convert(str(raw), filters, expr.strip(), where), bool(filters)

    if whole:
        value, typed = value_of(matches[0])
        if typed or value is None:
            return value
        return str(value)
    return _EXPR.sub(lambda m: "" if (v := value_of(m)[0]) is None else str(v), text)


def _render(
    obj: Any, env: Mapping[str, str], file: str, path: tuple[str | int, ...], problems: list[ConfigProblem]
) -> Any:
    if isinstance(obj, str):
        return _render_string(obj, env, _Where(file, path, problems))
    if isinstance(obj, Mapping):
        return {k: _render(v, env, file, (*path, str(k)), problems) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_render(v, env, file, (*path, i), problems) for i, v in enumerate(obj)]
    return obj


def render_env_vars(
    obj: Any, *, file: Path | str, env: Mapping[str, str] | None = None, path: tuple[str | int, ...] = ()
) -> Any:
    """Return ``obj`` (loaded YAML) with every ``{{ env_var(...) }}`` rendered.

    Every problem (an unset variable without default, an unsupported expression or filter) is
    collected and raised together as one :class:`ConfigError` naming the file and the key (``path``
    is where ``obj`` sits in the file, for those messages).
    """
    problems: list[ConfigProblem] = []
    out = _render(obj, os.environ if env is None else env, str(file), tuple(path), problems)
    if problems:
        raise ConfigError(problems=problems)
    return out
