"""``sixtyfour-sync debug``, like ``dbt debug``: what was chosen and why, and whether each part answers.

One line per check: the project and its syncs; which ``profiles.yml`` won and why (flag, environment variable,
project directory, ``~/.dbt``), and which files it shadows; per profile target: which profile and target and
why, the connection (connect and run a trivial query), the schemas of the ledger and of the targets; whether
the dbt manifest matches the target; the API URL, whether the key is accepted (``GET /check-balance``) and the
balance. Each problem has a hint; the command exits 1 when any check fails. Nothing is created or paid.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sixtyfour_sync import __version__
from sixtyfour_sync._redact import redact
from sixtyfour_sync.errors import ConfigError, SixtyfourSyncError

__all__ = ["Check", "print_checks", "run_checks"]


@dataclass(frozen=True)
class Check:
    """One line of ``debug``: ``ok`` is True, False (a problem) or None (information only)."""

    name: str
    ok: bool | None
    detail: str
    hint: str | None = None

    @property
    def label(self) -> str:
        """``OK``, ``ERROR`` or ``--``."""
        return {True: "OK", False: "ERROR", None: "--"}[self.ok]


def _problem_text(exc: SixtyfourSyncError) -> tuple[str, str | None]:
    problems = getattr(exc, "problems", None) or []
    if problems:
        first = problems[0]
        more = f" (+{len(problems) - 1} more: run validate)" if len(problems) > 1 else ""
        where = (first.file or "") + (f":{first.line}" if first.line else "")
        return (f"{where}: " if where else "") + first.message + more, first.hint or exc.hint
    return str(exc), exc.hint


def _connection(adapter: Any) -> Check:
    try:
        with adapter.session() as s:
            s.fetchall("SELECT 1")
    except SixtyfourSyncError as exc:
        text, hint = _problem_text(exc)
        return Check("connection", False, text, hint or "check the profile's host, user and password")
    except Exception as exc:  # a driver error while connecting is the user's setup, not a bug
        return Check("connection", False, f"{type(exc).__name__}: {exc}", "check the profile's connection keys")
    return Check("connection", True, f"{adapter.describe()}: SELECT 1 answered")


def _schemas(adapter: Any, ledger_schema: str | None, targets: Sequence[str | None]) -> list[Check]:
    out = []
    wanted: dict[str, str] = {}
    for schema in targets:
        name = schema or adapter.default_schema
        if name:
            wanted.setdefault(name, "target")
    ledger = ledger_schema or adapter.default_schema
    if ledger:
        wanted[ledger] = "ledger and target" if wanted.get(ledger) == "target" else "ledger"
    for name, role in wanted.items():
        try:
            exists = adapter.schema_exists(name)
        except SixtyfourSyncError as exc:
            out.append(Check(f"{role} schema", False, f"{name}: {exc}", exc.hint))
            continue
        detail = f"{name} exists" if exists else f"{name} does not exist yet (the first run creates it)"
        out.append(Check(f"{role} schema", True, detail))
    return out


def _manifest(project: Any, syncs: Sequence[Any]) -> list[Check]:
    from sixtyfour_sync.dbt import find_node, load_manifest
    from sixtyfour_sync.engine.plan.checks import manifest_mismatch

    refs = [s for s in syncs if s.spec.source.ref]
    path = project.target_dir / "manifest.json" if project.target_dir else None
    if not refs:
        return [Check("dbt manifest", None, f"not used (no sync has source.ref); would be {path}")]
    try:
        manifest = load_manifest(project.dbt_dir or project.project_dir, target_dir=project.target_dir)
    except ConfigError as exc:
        text, hint = _problem_text(exc)
        return [Check("dbt manifest", False, text, hint)]
    out = []
    for s in refs:
        node = find_node(manifest, s.spec.source.ref)
        if node is None:
            out.append(
                Check("dbt manifest", False, f"{s.spec.name}: no model {s.spec.source.ref!r} in {path}",
                      "check source.ref, then run `dbt compile`")
            )  # fmt: skip
            continue
        reason = manifest_mismatch(node, manifest, project.target_for(s))
        relation = ".".join(str(node.get(k)) for k in ("database", "schema", "alias") if node.get(k))
        if reason:
            hint = "run `dbt compile` (or build) for this target, or pass the --target dbt used"
            out.append(Check("dbt manifest", False, f"{s.spec.name}: {reason}", hint))
        else:
            out.append(Check("dbt manifest", True, f"{s.spec.name}: {s.spec.source.ref} -> {relation} ({path})"))
    return out


def _api(env: Mapping[str, str], api_url: str | None) -> list[Check]:
    from sixtyfour_sync.api import SixtyfourClient
    from sixtyfour_sync.api.client import API_URL_ENV, DEFAULT_BASE_URL
    from sixtyfour_sync.api.errors import AuthenticationError
    from sixtyfour_sync.api.retry import RetryPolicy

    url = api_url or env.get(API_URL_ENV) or DEFAULT_BASE_URL
    why = "--api-url" if api_url else (f"{API_URL_ENV}" if env.get(API_URL_ENV) else "the default")
    out = [Check("API URL", None, f"{url} ({why})")]
    key = env.get("SIXTYFOUR_API_KEY")
    if not key:
        out.append(Check("API key", False, "SIXTYFOUR_API_KEY is not set", "export SIXTYFOUR_API_KEY=..."))
        return out
    try:
        with SixtyfourClient(key, base_url=url, retry=RetryPolicy(max_attempts=2, base=0.2, cap=1.0)) as client:
            balance = client.check_balance()
    except AuthenticationError as exc:
        out.append(Check("API key", False, f"rejected: {exc}", "export the right SIXTYFOUR_API_KEY"))
        return out
    except SixtyfourSyncError as exc:
        text, hint = _problem_text(exc)
        out.append(Check("API key", False, f"GET /check-balance failed: {text}", hint or f"check {API_URL_ENV}"))
        return out
    out.append(Check("API key", True, "accepted (GET /check-balance)"))
    credits = "unknown" if balance.credits is None else f"{balance.credits:,.2f}"
    out.append(Check("balance", None if balance.credits is None else True, f"{credits} credits"))
    return out


def _targets(project: Any, syncs: Sequence[Any]) -> list[Check]:
    out: list[Check] = []
    seen: dict[tuple[str, str], list[Any]] = {}
    for s in syncs:
        try:
            resolved = project.target_for(s)
        except ConfigError as exc:
            text, hint = _problem_text(exc)
            out.append(Check(f"profile ({s.spec.name})", False, text, hint))
            continue
        seen.setdefault((resolved.profile, resolved.target), []).append(s)
    for (profile, target), members in seen.items():
        first = members[0]
        resolved = project.target_for(first)
        names = ", ".join(m.spec.name for m in members)
        out.append(Check("profile", True, f"{profile} ({project.profile_reason(first)}) for {names}"))
        out.append(Check("target", True, f"{target} ({resolved.target_reason}): {resolved.config.describe()}"))
        try:
            adapter = project.adapter_for(first)
        except SixtyfourSyncError as exc:
            text, hint = _problem_text(exc)
            out.append(Check("connection", False, text, hint))
            continue
        conn = _connection(adapter)
        out.append(conn)
        if conn.ok:
            schemas = [m.spec.target.schema_ for m in members]
            out += _schemas(adapter, getattr(adapter, "ledger_schema", None), schemas)
    return out


def _profiles_file(project: Any, env: Mapping[str, str]) -> list[Check]:
    from sixtyfour_sync.config.profiles import locate_profiles_file

    try:
        choice = locate_profiles_file(project_dir=project.project_dir, profiles_dir=project.profiles_dir, env=env)
    except ConfigError as exc:
        text, hint = _problem_text(exc)
        return [Check("profiles.yml", False, text, hint)]
    out = [Check("profiles.yml", True, f"{choice.file} (from {choice.reason})")]
    for other in choice.shadowed:
        out.append(Check("profiles.yml", None, f"{other} exists but is not used (lower in the lookup order)"))
    return out


def run_checks(
    project_dir: Path | str = ".",
    *,
    select: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    profiles_dir: Path | str | None = None,
    profile: str | None = None,
    target: str | None = None,
    dbt_project_dir: Path | str | None = None,
    vars: Mapping[str, Any] | None = None,
    target_path: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    api_url: str | None = None,
) -> list[Check]:
    """Every check of ``debug``, in order; none creates anything or costs anything."""
    from sixtyfour_sync.engine.project import Project

    env_map = os.environ if env is None else env
    checks = [Check("sixtyfour-sync", None, f"{__version__} (python {sys.version.split()[0]})")]
    try:
        project = Project.load(
            Path(project_dir),
            profiles_dir=Path(profiles_dir) if profiles_dir else None,
            profile=profile,
            target=target,
            env=env,
            dbt_project_dir=Path(dbt_project_dir) if dbt_project_dir else None,
            vars=vars,
            target_path=target_path,
        )
        syncs = project.select(select, exclude)
    except ConfigError as exc:
        text, hint = _problem_text(exc)
        checks.append(Check("project", False, text, hint or "run `sixtyfour-sync validate` for every problem"))
        return checks + _api(env_map, api_url)
    with project:
        checks.append(Check("project", True, f"{project.project_dir}: {len(syncs)} sync(s) selected"))
        dbt = project.dbt
        if dbt is not None and dbt.exists:
            checks.append(
                Check("dbt project", None, f"{dbt.dir / 'dbt_project.yml'} (profile: {dbt.profile or '-'}; "
                      f"target dir {project.target_dir})")
            )  # fmt: skip
        checks += _profiles_file(project, env_map)
        checks += _targets(project, syncs)
        checks += _manifest(project, syncs)
    return checks + _api(env_map, api_url)


def print_checks(checks: Sequence[Check], log_format: str) -> None:
    """One line per check (``OK``/``ERROR``/``--``), hints under problems; or one JSON object."""
    import click

    if log_format == "json":
        ok = all(c.ok is not False for c in checks)
        payload = {"event": "debug", "ok": ok, "checks": [asdict(c) for c in checks]}
        click.echo(redact(json.dumps(payload, default=str)))
        return
    width = max(len(c.name) for c in checks)
    for c in checks:
        click.echo(redact(f"{c.label:>5}  {c.name:<{width}}  {c.detail}"))
        if c.hint and c.ok is False:
            click.echo(redact(f"{'':>5}  {'':<{width}}  hint: {c.hint}"))
    failed = [c for c in checks if c.ok is False]
    click.echo("All checks passed." if not failed else f"{len(failed)} problem(s) found.")
