"""Rendering dbt's ``{{ env_var(...) }}`` and ``{{ var(...) }}`` in loaded YAML.

Only these two functions are supported (no other Jinja): they are what profiles and models need, and rendering
arbitrary templates from a config file would be a needless attack surface.

- ``{{ env_var('NAME') }}`` / ``{{ env_var('NAME', 'default') }}``: an environment variable, always text unless
  a filter says otherwise. dbt's type filters are understood when the expression is the whole value: ``| int``
  and ``| as_number`` give a number, ``| as_bool`` a boolean, ``| string``/``| as_text`` text.
- ``{{ var('name') }}`` / ``{{ var('name', default) }}``: a variable from ``--vars`` (YAML or JSON, as dbt takes
  it) or from ``dbt_project.yml``'s ``vars:``. As the whole value it keeps its YAML type (a number stays a
  number); inside a longer string it is formatted as text.

Any other expression or filter, an unset variable without default, or an undefined var is reported as a config
error naming the file, the line (when known), the key and the expression.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sixtyfour_sync.config.yamlfile import LineMap
from sixtyfour_sync.errors import ConfigError, ConfigProblem

__all__ = ["parse_vars", "render_env_vars", "render_templates"]

_EXPR = re.compile(r"\{\{(?P<body>.*?)\}\}", re.DOTALL)
_CALL = re.compile(
    r"""^\s*(?P<fn>env_var|var)\(\s*
        (?P<q>['"])(?P<name>[^'"]*)(?P=q)\s*
        (?:,\s*(?:(?P<dq>['"])(?P<default>.*?)(?P=dq)|(?P<num>-?\d+(?:\.\d+)?)|(?P<const>none|None|true|True|false|False))\s*)?
        \)\s*
        (?P<filters>(?:\|\s*[A-Za-z_]+\s*)*)$""",
    re.VERBOSE | re.DOTALL,
)
_CONSTANTS: dict[str, Any] = {"none": None, "None": None, "true": True, "True": True, "false": False, "False": False}
_NUMBER_FILTERS = {"int", "as_number", "float"}
_BOOL_FILTERS = {"as_bool", "bool"}
_TEXT_FILTERS = {"string", "as_text", "trim"}
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_MISSING = object()


def _path_text(path: tuple[str | int, ...]) -> str | None:
    return ".".join(str(p) for p in path) or None


def _convert(value: Any, filters: list[str], expr: str, where: _Where) -> Any:
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
    def __init__(
        self, file: str, path: tuple[str | int, ...], problems: list[ConfigProblem], lines: LineMap | None
    ) -> None:
        self.file = file
        self.path = path
        self.problems = problems
        self.lines = lines

    def problem(self, message: str, hint: str | None = None) -> None:
        line = self.lines.line_for(self.path) if self.lines is not None else None
        self.problems.append(ConfigProblem(self.file, _path_text(self.path), message, line=line, hint=hint))


class _Context:
    def __init__(self, env: Mapping[str, str], variables: Mapping[str, Any]) -> None:
        self.env = env
        self.vars = variables

    def lookup(self, m: re.Match[str], expr: str, where: _Where) -> Any:
        """The raw value of a matched call, or ``_MISSING`` (a problem was recorded)."""
        fn, name = m.group("fn"), m.group("name")
        source: Mapping[str, Any] = self.env if fn == "env_var" else self.vars
        if name in source:
            return source[name]
        if m.group("default") is not None:
            return m.group("default")
        if m.group("num") is not None:
            num = m.group("num")
            return num if fn == "env_var" else (float(num) if "." in num else int(num))
        if m.group("const") is not None:
            return _CONSTANTS[m.group("const")]
        if fn == "env_var":
            where.problem(
                f"environment variable {name!r} is not set (used in {expr})",
                hint=f"export {name}=... or give a default: {{{{ env_var('{name}', 'value') }}}}",
            )
        else:
            known = ", ".join(sorted(map(str, self.vars))) or "none"
            where.problem(
                f"var {name!r} is not defined (used in {expr}; vars given: {known})",
                hint=f"pass --vars '{{{name}: value}}', add it to vars: in dbt_project.yml, "
                f"or give a default: {{{{ var('{name}', 'value') }}}}",
            )
        return _MISSING


def _render_string(text: str, ctx: _Context, where: _Where) -> Any:
    if "{{" not in text:
        return text
    matches = list(_EXPR.finditer(text))
    whole = len(matches) == 1 and matches[0].group(0) == text.strip()

    def value_of(m: re.Match[str]) -> tuple[Any, bool]:
        body = m.group("body")
        expr = ("{{" + body + "}}").strip()
        cm = _CALL.match(body)
        if cm is None:
            where.problem(
                f"unsupported template expression {expr!r}",
                hint="only {{ env_var('NAME', 'default') }} and {{ var('name', default) }} are supported",
            )
            return m.group(0), False
        raw = ctx.lookup(cm, expr, where)
        if raw is _MISSING:
            return m.group(0), False
        filters = [f.strip() for f in cm.group("filters").split("|") if f.strip()]
        if raw is None:
            return None, True
        if not filters:
            # a var keeps its YAML type; an env var is text
            return (raw, True) if cm.group("fn") == "var" else (str(raw), False)
        return _convert(raw, filters, expr, where), True

    if whole:
        value, typed = value_of(matches[0])
        if typed or value is None:
            return value
        return str(value)
    return _EXPR.sub(lambda m: "" if (v := value_of(m)[0]) is None else str(v), text)


def _render(
    obj: Any,
    ctx: _Context,
    file: str,
    path: tuple[str | int, ...],
    problems: list[ConfigProblem],
    lines: LineMap | None,
) -> Any:
    if isinstance(obj, str):
        return _render_string(obj, ctx, _Where(file, path, problems, lines))
    if isinstance(obj, Mapping):
        return {k: _render(v, ctx, file, (*path, str(k)), problems, lines) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_render(v, ctx, file, (*path, i), problems, lines) for i, v in enumerate(obj)]
    return obj


def render_templates(
    obj: Any,
    *,
    file: Path | str,
    env: Mapping[str, str] | None = None,
    vars: Mapping[str, Any] | None = None,
    path: tuple[str | int, ...] = (),
    lines: LineMap | None = None,
) -> Any:
    """Return ``obj`` (loaded YAML) with every ``{{ env_var(...) }}`` and ``{{ var(...) }}`` rendered.

    Every problem (an unset variable without default, an undefined var, an unsupported expression or filter)
    is collected and raised together as one :class:`ConfigError` naming the file, the line (from ``lines``)
    and the key (``path`` is where ``obj`` sits in the file, for those messages).
    """
    problems: list[ConfigProblem] = []
    ctx = _Context(os.environ if env is None else env, vars or {})
    out = _render(obj, ctx, str(file), tuple(path), problems, lines)
    if problems:
        raise ConfigError(problems=problems)
    return out


#: The historical name: it renders ``var()`` too.
render_env_vars = render_templates


def parse_vars(text: str | None) -> dict[str, Any]:
    """``--vars`` as dbt takes it: a YAML (or JSON) mapping, ``{key: value}``; ConfigError otherwise."""
    import yaml

    if text is None or not text.strip():
        return {}
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"--vars is not valid YAML or JSON: {exc}", hint="""for example --vars '{"region": "us", "limit": 100}'"""
        ) from None
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"--vars must be a mapping of names to values, got {type(data).__name__}",
            hint="for example --vars '{region: us, limit: 100}'",
        )
    return {str(k): v for k, v in data.items()}
