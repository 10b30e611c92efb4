"""Reading YAML the user wrote, keeping line numbers so every error can say where.

PyYAML silently keeps the last of two equal keys in a mapping; a config file with a duplicated key is almost
always a mistake (two ``struct:`` blocks, say), so it is reported here instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sixtyfour_sync.errors import ConfigError, ConfigProblem

__all__ = ["LineMap", "YamlDocument", "load_yaml"]

PathKey = tuple[str | int, ...]


@dataclass
class LineMap:
    """Dotted path -> 1-based line of the node in the file (best effort)."""

    lines: dict[PathKey, int] = field(default_factory=dict)

    def line_for(self, path: PathKey) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return self.lines.get((), None)


@dataclass
class YamlDocument:
    """A parsed YAML file: its data, where it came from, and the line of every node."""

    data: Any
    file: Path
    lines: LineMap


def _walk(node: yaml.Node, path: PathKey, lines: LineMap, problems: list[ConfigProblem], file: str) -> None:
    lines.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                problems.append(
                    ConfigProblem(
                        file,
                        ".".join(str(p) for p in (*path, key)),
                        f"duplicate key {key!r} (first defined on line {seen[key]})",
                        line=line,
                        hint="remove one of them; YAML would silently keep only the last",
                    )
                )
            seen[key] = line
            child = (*path, key)
            lines.lines[child] = line
            _walk(value_node, child, lines, problems, file)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            child = (*path, i)
            lines.lines[child] = item.start_mark.line + 1
            _walk(item, child, lines, problems, file)


#: libyaml's parser when PyYAML was built with it (several times faster than the pure-Python one).
_FAST_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _parse(text: str) -> tuple[Any, Any]:
    """The document's node tree (for line numbers) and its data; YAML errors as the pure-Python parser words them."""
    try:
        return yaml.compose(text, Loader=_FAST_LOADER), yaml.load(text, Loader=_FAST_LOADER)  # noqa: S506
    except yaml.YAMLError:
        pass  # read again below, so the message and line of an error do not depend on how PyYAML was built
    return yaml.compose(text, Loader=yaml.SafeLoader), yaml.safe_load(text)


def load_yaml(file: Path, text: str | None = None) -> YamlDocument:
    """Parse ``file`` (or ``text`` as if it were that file) with line numbers; ConfigError on bad YAML."""
    name = str(file)
    if text is None:
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(problems=[ConfigProblem(name, None, "file not found")]) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(problems=[ConfigProblem(name, None, f"cannot read file: {exc}")]) from exc
    try:
        node, data = _parse(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else None
        msg = f"invalid YAML: {exc.problem or exc}"
        if exc.context:
            msg += f" ({exc.context})"
        raise ConfigError(
            problems=[ConfigProblem(name, None, msg, line=line, hint="check indentation and quoting")]
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(problems=[ConfigProblem(name, None, f"invalid YAML: {exc}")]) from None
    lines = LineMap()
    problems: list[ConfigProblem] = []
    if node is not None:
        _walk(node, (), lines, problems, name)
    if problems:
        raise ConfigError(problems=problems)
    return YamlDocument(data=data, file=file, lines=lines)
