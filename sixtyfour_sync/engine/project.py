"""A project on disk: its sync definitions, their profiles, and the selection of syncs to run."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sixtyfour_sync.config.loading import load_project_models
from sixtyfour_sync.config.models import LoadedSync
from sixtyfour_sync.config.profiles import ResolvedTarget, load_target
from sixtyfour_sync.config.yamlfile import load_yaml
from sixtyfour_sync.engine.selectors import select_syncs
from sixtyfour_sync.errors import ConfigError, ConfigProblem
from sixtyfour_sync.warehouse import Adapter, connect

__all__ = ["DbtProject", "Project", "read_dbt_project", "select_syncs"]

TARGET_PATH_ENV = "DBT_TARGET_PATH"


@dataclass(frozen=True)
class DbtProject:
    """What sixtyfour-sync reads from ``dbt_project.yml`` (all optional)."""

    dir: Path
    exists: bool = False
    name: str | None = None
    profile: str | None = None
    target_path: str | None = None
    vars: dict[str, Any] = field(default_factory=dict)

    def target_dir(self, target_path: Path | str | None = None, env: Mapping[str, str] | None = None) -> Path:
        """dbt's target directory: ``--target-path``, else ``DBT_TARGET_PATH``, else ``target-path:``, else target/.

        A relative path is taken from the dbt project directory, as dbt does.
        """
        env = os.environ if env is None else env
        chosen = target_path or env.get(TARGET_PATH_ENV) or self.target_path or "target"
        p = Path(chosen).expanduser()
        return p if p.is_absolute() else self.dir / p


def read_dbt_project(dbt_dir: Path, *, required: bool = False) -> DbtProject:
    """``dbt_project.yml`` in ``dbt_dir`` (profile, target-path, vars); an empty one when there is none."""
    path = dbt_dir / "dbt_project.yml"
    if not path.is_file():
        if required:
            raise ConfigError(
                problems=[ConfigProblem(str(path), None, "no dbt_project.yml here", hint="check --dbt-project-dir")]
            )
        return DbtProject(dbt_dir)
    data = load_yaml(path).data
    if not isinstance(data, Mapping):
        return DbtProject(dbt_dir, exists=True)
    name = data.get("name") if isinstance(data.get("name"), str) else None
    raw_vars = data.get("vars")
    variables: dict[str, Any] = {str(k): v for k, v in raw_vars.items()} if isinstance(raw_vars, Mapping) else {}
    # vars scoped to this project (vars: {my_project: {...}}) apply too
    if name and isinstance(variables.get(name), Mapping):
        variables.update({str(k): v for k, v in variables.pop(name).items()})
    return DbtProject(
        dbt_dir,
        exists=True,
        name=name,
        profile=data["profile"] if isinstance(data.get("profile"), str) else None,
        target_path=data["target-path"] if isinstance(data.get("target-path"), str) else None,
        vars=variables,
    )


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
    #: ``--vars`` over dbt_project.yml's ``vars:``: what ``{{ var(...) }}`` renders to.
    vars: dict[str, Any] = field(default_factory=dict)
    #: dbt's target directory (manifest.json, run_results.json, and sixtyfour_run_results.json).
    target_dir: Path | None = None
    dbt: DbtProject | None = None
    #: The project's ``prices:`` (cents per row), per (endpoint, tier).
    prices: dict[tuple[str, str], float] = field(default_factory=dict)
    #: Problems in the sync definitions, when loaded ``lenient`` (``syncs`` then holds the sound ones).
    problems: list[ConfigProblem] = field(default_factory=list)
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
        vars: Mapping[str, Any] | None = None,
        target_path: Path | str | None = None,
        lenient: bool = False,
    ) -> Project:
        """Load and validate every sync definition (raising one error listing every problem).

        ``lenient`` (for ``validate``) keeps the problems in :attr:`problems` instead, with every sound sync.
        """
        project_dir = project_dir.resolve()
        dbt_dir = (dbt_project_dir or project_dir).resolve()
        dbt = read_dbt_project(dbt_dir, required=dbt_project_dir is not None)
        variables = {**dbt.vars, **(vars or {})}
        models = load_project_models(project_dir, env=env, vars=variables, lenient=lenient)
        return cls(
            project_dir,
            profiles_dir,
            profile,
            target,
            env,
            models.syncs,
            dbt.profile,
            dbt_dir,
            variables,
            dbt.target_dir(target_path, env),
            dbt,
            dict(models.prices),
            list(models.problems),
        )

    def profile_for(self, sync: LoadedSync) -> str | None:
        """``--profile``, else the model file's ``profile:``, else dbt_project.yml's, else the default."""
        return self.profile or sync.profile or self.dbt_profile

    def profile_reason(self, sync: LoadedSync) -> str:
        """Why :meth:`profile_for` chose what it chose (for ``debug``)."""
        if self.profile:
            return "--profile"
        if sync.profile:
            return f"profile: in {sync.file.name}"
        if self.dbt_profile:
            return "profile: in dbt_project.yml"
        return "the default profile name"

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
                vars=self.vars,
            )
        return self._targets[name]

    def adapter_for(self, sync: LoadedSync) -> Adapter:
        """An open adapter for the sync's target, shared by syncs with the same profile and target."""
        resolved = self.target_for(sync)
        key = (resolved.profile, resolved.target)
        if key not in self._adapters:
            self._adapters[key] = connect(resolved, project_dir=self.project_dir)
        return self._adapters[key]

    def select(self, select: Sequence[str] | None, exclude: Sequence[str] | None = None) -> list[LoadedSync]:
        """The syncs a ``--select`` (less an ``--exclude``) names."""
        return select_syncs(self.syncs, select, exclude, root=self.project_dir)

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
