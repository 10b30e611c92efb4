"""dbt's node selection syntax, for syncs: ``--select`` and ``--exclude``.

As in dbt, the arguments of one ``--select`` (and the words of a quoted argument) are a union; a comma inside a
word is an intersection (``tag:daily,tag:people`` is what has both tags). A word is a sync name or a glob
(``enrich_*``), ``tag:NAME`` (globs allowed), ``path:models/leads.yml`` (the file, a folder or a glob, relative
to the project) or ``endpoint:people``. ``--exclude`` takes the same syntax and removes what it matches.

Disabled syncs (``enabled: false``) are left out unless named exactly. A word that matches nothing is an error
that lists what exists: a typo must never turn into a run (or a spend) that nobody asked for.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from pathlib import Path

from sixtyfour_sync.config.models import LoadedSync
from sixtyfour_sync.errors import ConfigError

__all__ = ["parse_selector", "select_syncs"]

_METHODS = ("tag", "path", "endpoint", "name")


def parse_selector(args: Sequence[str] | None) -> list[list[str]]:
    """``["a b", "tag:x,tag:y"]`` -> ``[["a"], ["b"], ["tag:x", "tag:y"]]``: a union of intersections."""
    terms = []
    for arg in args or []:
        for word in arg.split():
            atoms = [a for a in word.split(",") if a]
            if atoms:
                terms.append(atoms)
    return terms


def _rel(loaded: LoadedSync, root: Path | None) -> str:
    if root is not None:
        try:
            return loaded.file.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            pass
    return loaded.file.as_posix()


def _matcher(atom: str, root: Path | None) -> tuple[Callable[[LoadedSync], bool], bool]:
    """A predicate for one selector word, and whether it names one sync exactly (so may pick a disabled one)."""
    if atom.startswith(("+", "@")) or atom.endswith("+"):
        raise ConfigError(
            f"selector {atom!r}: graph operators (+, @) do not apply to syncs",
            hint="select syncs by name, glob, tag:, path: or endpoint:; a sync's dbt model is its source.ref",
        )
    method, sep, value = atom.partition(":")
    if not sep:
        method, value = "name", atom
    elif method not in _METHODS:
        raise ConfigError(
            f"selector {atom!r}: unknown method {method!r}",
            hint=f"use a name or glob, or one of: {', '.join(m + ':' for m in _METHODS)}",
        )
    if method == "tag":
        return (lambda s: any(fnmatch.fnmatchcase(t, value) for t in s.spec.tags)), False
    if method == "endpoint":
        return (lambda s: s.spec.endpoint == value), False
    if method == "path":
        pattern = value.rstrip("/")

        def by_path(s: LoadedSync) -> bool:
            rel = _rel(s, root)
            return fnmatch.fnmatchcase(rel, pattern) or rel.startswith(pattern + "/")

        return by_path, False
    exact = not any(ch in value for ch in "*?[")
    return (lambda s: fnmatch.fnmatchcase(s.spec.name, value)), exact


def _evaluate(
    syncs: Sequence[LoadedSync], terms: list[list[str]], root: Path | None, flag: str, *, include_disabled: bool
) -> set[str]:
    chosen: set[str] = set()
    unmatched: list[str] = []
    for atoms in terms:
        hits: set[str] | None = None
        for atom in atoms:
            match, exact = _matcher(atom, root)
            found = {s.spec.name for s in syncs if match(s) and (s.spec.enabled or exact or include_disabled)}
            if not found:
                unmatched.append(atom)
            hits = found if hits is None else hits & found
        chosen |= hits or set()
    if unmatched:
        names = ", ".join(s.spec.name for s in syncs) or "none"
        tags = ", ".join(sorted({t for s in syncs for t in s.spec.tags})) or "none"
        raise ConfigError(
            f"{flag} matched no sync for: {', '.join(unmatched)} (syncs: {names}; tags: {tags})",
            hint="use a sync name, a glob such as enrich_*, tag:NAME, path:models/x.yml or endpoint:people",
        )
    return chosen


def select_syncs(
    syncs: Sequence[LoadedSync],
    select: Sequence[str] | None,
    exclude: Sequence[str] | None = None,
    *,
    root: Path | None = None,
) -> list[LoadedSync]:
    """The syncs ``select`` names (default: every enabled one) less those ``exclude`` names, in file order.

    ``root`` is the project directory, for ``path:`` selectors.
    """
    terms = parse_selector(select)
    if terms:
        chosen = _evaluate(syncs, terms, root, "--select", include_disabled=False)
    else:
        chosen = {s.spec.name for s in syncs if s.spec.enabled}
    out_terms = parse_selector(exclude)
    if out_terms:
        chosen -= _evaluate(syncs, out_terms, root, "--exclude", include_disabled=True)
    return [s for s in syncs if s.spec.name in chosen]
