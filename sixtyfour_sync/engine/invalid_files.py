"""A project with a broken sync file: the files that fail to load, and the syncs of the files that load.

``Project.load(..., lenient=True)`` keeps every problem in ``problems`` instead of raising. This splits them by
file: a file with any problem (a YAML typo, a schema error, a name another file already uses, a target column
another sync writes) is left out whole, so none of its syncs runs half-checked; the syncs of every other file
are sound. The Dagster assets (:mod:`sixtyfour_sync.dagster`) build on it: one broken file fails one asset of
its own instead of the whole code location.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sixtyfour_sync.config.models import LoadedSync
from sixtyfour_sync.errors import ConfigError, ConfigProblem

__all__ = ["invalid_files", "sound_syncs"]


def invalid_files(problems: Sequence[ConfigProblem]) -> dict[Path, list[ConfigProblem]]:
    """Each file with a problem and its problems, in the order found.

    A problem that names no file cannot be set aside with one file: it raises the :class:`ConfigError` a
    strict load would have raised.
    """
    loose = [p for p in problems if not p.file]
    if loose:
        raise ConfigError(f"{len(problems)} problem(s) in sync definitions:", problems=list(problems))
    out: dict[Path, list[ConfigProblem]] = {}
    for p in problems:
        out.setdefault(Path(str(p.file)).resolve(), []).append(p)
    return out


def sound_syncs(syncs: Sequence[LoadedSync], problems: Sequence[ConfigProblem]) -> list[LoadedSync]:
    """The syncs whose file has no problem (all of them when there is none)."""
    broken = invalid_files(problems)
    return [s for s in syncs if s.file.resolve() not in broken]
