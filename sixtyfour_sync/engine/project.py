"""A project on disk: its sync definitions, their profiles, and the selection of syncs to run."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sixtyfour_sync.config.models import LoadedSync, load_models
from sixtyfour_sync.config.profiles import ResolvedTarget, load_target
from sixtyfour_sync.config.yamlfile import load_yaml
from sixtyfour_sync.errors import ConfigError, ConfigProblem
from sixtyfour_sync.warehouse import Adapter, connect

__all__ = ["Project", "select_syncs"]


def select_syncs(syncs: Sequence[LoadedSync], select: Sequence[str] | None) -> list[LoadedSync]:
    """The syncs matching dbt-like selectors: names (globs allowed), ``tag:NAME``; several are a union.

    A selector may hold several words separated by spaces or commas (``--select "a tag:daily"``). Disabled
    syncs are left out unless named explicitly. A selector that matches nothing is an error.
    """
    words = [w for s in (select or []) for w in s.replace(",", " ").split() if w]
    if not words:
        return [s for s in syncs if s.spec.enabled]
    chosen: dict[str, LoadedSync] = {}
    unmatched = []
    for word in words:
        if word.startswith("tag:"):
            tag = word[4:]
            hits = [s for s in syncs if tag in s.spec.tags and s.spec.enabled]
        else:
            hits = [s for s in syncs if fnmatch.fnmatchcase(s.spec.name, word)]
        if not hits:
            unmatched.append(word)
        for s in hits:
            chosen.setdefault(s.spec.name, s)
    if unmatched:
        names = ", ".join(s.spec.name for s in syncs) or "none"
        raise ConfigError(
            f"--select matched no sync for: {', '.join(unmatched)} (syncs: {names})",
            hint="use a sync name, a glob such as enrich_*, or tag:NAME",
        )
    return [s for s in syncs if s.spec.name in chosen]


@dataclass
class Project:
    """Everything a command needs from the project directory and the command-line flags."""

    project_dir: Path
    profiles_dir: Path | None = None
    profile: str | None = None
    target: str | None = None
    env: Mapping[str, str] | None = None
    syncs: list[LoadedSync] = field(default_factory=list)
    dbt_profile: str | None = None
    #: Where dbt_project.yml and target/ are (the project directory unless --dbt-project-dir says otherwise).
    dbt_dir: Path | None = None
    _targets: dict[str | None, ResolvedTarget] = field(default_factory=dict, repr=False)
    _adapters: dict[tuple[str, str], Adapter] = field(default_factory=dict, repr=False)

    @classmethod
    def load(
        cls,
        project_dir: Path,
        *,
        profiles_dir: Path | None = None,
        profile: str | None = None,
        target: str | None = None,
        env: Mapping[str, str] | None = None,
        dbt_project_dir: Path | None = None,
    ) -> Project:
        """Load and validate every sync definition (raising one error listing every problem)."""
        project_dir = project_dir.resolve()
        dbt_dir = (dbt_project_dir or project_dir).resolve()
        dbt_profile = None
        dbt_project = dbt_dir / "dbt_project.yml"
        if dbt_project_dir is not None and not dbt_project.is_file():
            raise ConfigError(
                problems=[
                    ConfigProblem(str(dbt_project), None, "no dbt_project.yml here", hint="check --dbt-project-dir")
                ]
            )
        if dbt_project.is_file():
            data = load_yaml(dbt_project).data
            if isinstance(data, Mapping) and isinstance(data.get("profile"), str):
                dbt_profile = data["profile"]
        syncs = load_models(project_dir, env=env)
        return cls(project_dir, profiles_dir, profile, target, env, syncs, dbt_profile, dbt_dir)

    def profile_for(self, sync: LoadedSync) -> str | None:
        """``--profile``, else the model file's ``profile:``, else dbt_project.yml's, else the default."""
        return self.profile or sync.profile or self.dbt_profile

    def target_for(self, sync: LoadedSync) -> ResolvedTarget:
        """The resolved profile target of a sync (profiles.yml read once per profile)."""
        name = self.profile_for(sync)
        if name not in self._targets:
            self._targets[name] = load_target(
                project_dir=self.project_dir,
                profiles_dir=self.profiles_dir,
                profile=self.profile,
                target=self.target,
                default_profile=name,
                env=self.env,
            )
        return self._targets[name]

    def adapter_for(self, sync: LoadedSync) -> Adapter:
        """An open adapter for the sync's target, shared by syncs with the same profile and target."""
        resolved = self.target_for(sync)
        key = (resolved.profile, resolved.target)
        if key not in self._adapters:
            self._adapters[key] = connect(resolved, project_dir=self.project_dir)
        return self._adapters[key]

    def select(self, select: Sequence[str] | None) -> list[LoadedSync]:
        """The syncs a ``--select`` names."""
        return select_syncs(self.syncs, select)

    def check_targets(self, syncs: Sequence[LoadedSync]) -> list[ConfigProblem]:
        """Resolve every sync's profile target; the problems found (for ``validate``)."""
        problems: list[ConfigProblem] = []
        for s in syncs:
            try:
                self.target_for(s)
            except ConfigError as exc:
                problems.extend(exc.problems or [ConfigProblem(str(s.file), s.spec.name, str(exc))])
        return problems

    def close(self) -> None:
        """Close every adapter opened."""
        for adapter in self._adapters.values():
            adapter.close()
        self._adapters.clear()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
