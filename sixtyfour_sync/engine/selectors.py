"""dbt's node selection syntax, for syncs: ``--select`` and ``--exclude``.

As in dbt, the arguments of one ``--select`` (and the words of a quoted argument) are a union; a comma inside a
word is an intersection (``tag:daily,tag:people`` is what has both tags). A word is a sync name or a glob
(``enrich_*``), ``tag:NAME`` (globs allowed), ``path:models/leads.yml`` (the file, a folder or a glob, relative
to the project) or ``endpoint:people``. ``--exclude`` takes the same syntax and removes what it matches.

Disabled syncs (``enabled: false``) are left out unless named exactly. A word that matches nothing is an error
that lists what exists: a typo must never turn into a run (or a spend) that nobody asked for. Words that each
match something but leave nothing together (an intersection of disjoint sets, an ``--exclude`` that removes
everything) are not an error, as in dbt ("Nothing to do"): :func:`explain_empty` says what each part matched and
why nothing is left, for a warning (or, under ``--fail-on-empty``, an error).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from pathlib import Path

from sixtyfour_sync.config.models import LoadedSync
from sixtyfour_sync.errors import ConfigError

__all__ = ["explain_empty", "parse_selector", "select_syncs"]

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


def _names(found: Sequence[str]) -> str:
    shown = ", ".join(found[:8])
    return shown + (f" and {len(found) - 8} more" if len(found) > 8 else "")


def _term_matches(
    syncs: Sequence[LoadedSync], atoms: list[str], root: Path | None, *, include_disabled: bool
) -> list[tuple[str, list[str]]]:
    """Each word of an intersection with the syncs it matches on its own, in file order."""
    out = []
    for atom in atoms:
        match, exact = _matcher(atom, root)
        out.append((atom, [s.spec.name for s in syncs if match(s) and (s.spec.enabled or exact or include_disabled)]))
    return out


def explain_empty(
    syncs: Sequence[LoadedSync],
    select: Sequence[str] | None,
    exclude: Sequence[str] | None = None,
    *,
    root: Path | None = None,
) -> str | None:
    """Why ``select`` less ``exclude`` picks no sync, part by part; None when it picks some.

    Call it after :func:`select_syncs` accepted the same arguments (a word that matches nothing is its error).
    """
    if select_syncs(syncs, select, exclude, root=root):
        return None
    terms = parse_selector(select)
    if not syncs:
        return "the project defines no sync (no models/*.yml or sixtyfour/*.yml with syncs:)"
    if not terms:
        picked = [s.spec.name for s in syncs if s.spec.enabled]
        if not picked:
            return f"every sync is disabled (enabled: false): {_names([s.spec.name for s in syncs])}"
        parts = [f"every enabled sync ({_names(picked)})"]
    else:
        parts = []
        picked = []
        for atoms in terms:
            matches = _term_matches(syncs, atoms, root, include_disabled=False)
            if len(atoms) == 1:
                atom, found = matches[0]
                parts.append(f"{atom} matched {_names(found)}")
                picked += [n for n in found if n not in picked]
                continue
            each = "; ".join(f"{atom} matched {_names(found)}" for atom, found in matches)
            common = set.intersection(*(set(found) for _, found in matches))
            if common:
                found = [s.spec.name for s in syncs if s.spec.name in common]
                parts.append(f"{','.join(atoms)} matched {_names(found)} ({each})")
                picked += [n for n in found if n not in picked]
            else:
                parts.append(
                    f"{','.join(atoms)} is an intersection that no sync is in ({each}; a comma means all of them, "
                    "a space or another word means any of them)"
                )
    text = "--select " + "; ".join(parts) if terms else parts[0]
    out_terms = parse_selector(exclude)
    if picked and out_terms:
        gone = _evaluate(syncs, out_terms, root, "--exclude", include_disabled=True)
        words = " ".join(",".join(atoms) for atoms in out_terms)
        text += f"; --exclude {words} removed {_names([n for n in picked if n in gone])}"
    return text
