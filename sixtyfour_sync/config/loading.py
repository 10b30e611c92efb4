"""Reading sync files: every file parsed with line numbers, ``{{ env_var(...) }}`` rendered, and every problem
in every file reported at once, each with file, line, dotted path and a hint."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ValidationError,
)

from sixtyfour_sync.config.base import (
    _DBT_KEYS,
)
from sixtyfour_sync.config.models import LoadedSync, ModelFile
from sixtyfour_sync.config.yamlfile import LineMap, load_yaml
from sixtyfour_sync.errors import ConfigError, ConfigProblem


def _keys_at(loc: tuple[str | int, ...]) -> list[str]:
    """The keys the model at ``loc`` (a location in a models file) accepts, by their YAML names."""
    import typing

    model: Any = ModelFile
    in_mapping = False
    for part in loc:
        if isinstance(part, int) or model is None or in_mapping:
            in_mapping = False
            continue
        field = model.model_fields.get("schema_" if part == "schema" else str(part))
        if field is None:
            return []
        model = None
        in_mapping = typing.get_origin(field.annotation) is dict
        candidates = [field.annotation, *typing.get_args(field.annotation)]
        candidates += [a for c in list(candidates) for a in typing.get_args(c)]
        for c in candidates:
            if isinstance(c, type) and issubclass(c, BaseModel):
                model = c
                break
    if model is None:
        return []
    return [f.alias or name for name, f in model.model_fields.items()]


def _yaml_path(loc: tuple[str | int, ...], lines: LineMap) -> tuple[str | int, ...]:
    """``loc`` as the YAML spells it: a list index the model made from a mapping (``subfields`` written as
    ``name: description``) becomes that mapping's key, so the problem points at its line."""
    out: list[str | int] = []
    for part in loc:
        if isinstance(part, int) and (*out, part) not in lines.lines:
            here = tuple(out)
            keys = [p[-1] for p in lines.lines if len(p) == len(here) + 1 and p[: len(here)] == here]
            if 0 <= part < len(keys) and all(isinstance(k, str) for k in keys):
                part = keys[part]
        out.append(part)
    return tuple(out)


def _problems_from(exc: ValidationError, file: Path, lines: LineMap) -> list[ConfigProblem]:
    problems = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        # pydantic reports the alias-free field name for aliased fields
        loc = _yaml_path(tuple("schema" if p == "schema_" else p for p in loc), lines)
        msg = err["msg"].removeprefix("Value error, ")
        hint = None
        if err["type"] == "extra_forbidden":
            msg = f"unknown key {loc[-1]!r}"
            hint = f"check the spelling; keys here: {', '.join(_keys_at(loc[:-1]))}"
        elif err["type"] == "missing":
            msg = f"missing required key {loc[-1]!r}"
        dotted = ".".join(str(p) for p in loc)
        problems.append(ConfigProblem(str(file), dotted or None, msg, line=lines.line_for(loc), hint=hint))
    return problems


def _render(
    data: Any, file: Path, env: Mapping[str, str] | None, variables: Mapping[str, Any] | None, lines: LineMap
) -> Any:
    from sixtyfour_sync.config.envvars import render_templates

    return render_templates(data, file=file, env=env, vars=variables, lines=lines)


#: Where a project's sync definitions are: ``models/``, and ``sixtyfour/`` (in a dbt project: beside
#: dbt_project.yml, outside the folders dbt parses, whose YAML dbt v2 refuses unknown keys in; docs/dbt.md).
SYNC_DIRS = ("models", "sixtyfour")


def model_files(project_dir: Path) -> list[Path]:
    """Every .yml and .yaml file below the project's :data:`SYNC_DIRS`, in a stable order."""
    found: list[Path] = []
    for name in SYNC_DIRS:
        root = project_dir / name
        if root.is_dir():
            found += sorted(p for p in root.rglob("*") if p.suffix in (".yml", ".yaml") and p.is_file())
    return found


@dataclass(frozen=True)
class Models:
    """Every sync of a project, and the prices its files give (per endpoint and tier, in cents per row)."""

    syncs: list[LoadedSync]
    prices: dict[tuple[str, str], float] = field(default_factory=dict)
    #: Under ``lenient`` loading: every problem found (``syncs`` then holds only the definitions without one).
    problems: list[ConfigProblem] = field(default_factory=list)


def load_models(
    project_dir: Path,
    *,
    files: Iterable[Path] | None = None,
    env: Mapping[str, str] | None = None,
    vars: Mapping[str, Any] | None = None,
) -> list[LoadedSync]:
    """Load and validate every sync; raise one ConfigError listing every problem in every file.

    ``vars`` are what ``{{ var('name') }}`` renders to (``--vars`` over ``dbt_project.yml``'s ``vars:``).
    """
    return load_project_models(project_dir, files=files, env=env, vars=vars).syncs


def load_project_models(
    project_dir: Path,
    *,
    files: Iterable[Path] | None = None,
    env: Mapping[str, str] | None = None,
    vars: Mapping[str, Any] | None = None,
    lenient: bool = False,
) -> Models:
    """:func:`load_models`, with the project's ``prices:`` (every file's, checked to agree).

    ``lenient`` (for ``validate``) raises nothing for problems in the files: they are returned in ``problems``,
    with every sync that has none of its own (a sync of a file with a mistake elsewhere in it included), so the
    checks that follow can still look at those.
    """
    paths = list(files) if files is not None else model_files(project_dir)
    problems: list[ConfigProblem] = []
    loaded: list[LoadedSync] = []
    prices: dict[tuple[str, str], float] = {}
    price_at: dict[tuple[str, str], str] = {}
    if not paths:
        raise ConfigError(
            problems=[
                ConfigProblem(
                    str(project_dir / "models"),
                    None,
                    "no sync definitions found (in models/ or sixtyfour/)",
                    hint="create models/<name>.yml, or sixtyfour/<name>.yml in a dbt project "
                    "(see `sixtyfour-sync init`)",
                )
            ]
        )
    for path in paths:
        read = _read_model_file(path, env, vars, lenient=lenient, problems=problems, loaded=loaded)
        if read is None:
            continue
        model, lines = read
        _add_prices(model, path, lines, prices, price_at, problems)
        for i, spec in enumerate(model.syncs):
            loaded.append(
                LoadedSync(spec, path, lines.line_for(("syncs", i)), spec.profile or model.profile, lines, index=i)
            )
    seen = _first_of_each_name(loaded, problems)
    problems.extend(_shared_target_problems(list(seen.values())))
    if problems and lenient:
        return Models(list(seen.values()), prices, problems)
    if problems:
        raise ConfigError(f"{len(problems)} problem(s) in sync definitions:", problems=problems)
    return Models(loaded, prices)


def _read_model_file(
    path: Path,
    env: Mapping[str, str] | None,
    vars: Mapping[str, Any] | None,
    *,
    lenient: bool,
    problems: list[ConfigProblem],
    loaded: list[LoadedSync],
) -> tuple[ModelFile, LineMap] | None:
    """One model file, read, rendered and validated, with its line numbers; ``None`` when it is a dbt properties
    file or has problems (added to ``problems``; ``lenient``: its sound syncs added to ``loaded`` all the same)."""
    try:
        doc = load_yaml(path)
        raw = doc.data
        if isinstance(raw, Mapping) and "syncs" not in raw and set(map(str, raw)) & _DBT_KEYS:
            return None  # a dbt properties file (models/ is shared with dbt): its Jinja is dbt's, not ours
        data = _render(raw, path, env, vars, doc.lines)
    except ConfigError as exc:
        problems.extend(exc.problems or [ConfigProblem(str(path), None, str(exc))])
        return None
    if data is None:
        problems.append(ConfigProblem(str(path), None, "the file is empty", hint="add a `syncs:` list"))
        return None
    if isinstance(data, Mapping) and "syncs" not in data and set(map(str, data)) & _DBT_KEYS:
        return None  # a dbt properties file (models/ is shared with dbt inside a dbt project)
    if isinstance(data, Mapping) and "syncs" not in data and "prices" in data:
        data = {**data, "syncs": []}  # a file that only sets the project's prices
    if not isinstance(data, Mapping) or "syncs" not in data:
        problems.append(ConfigProblem(str(path), None, "expected a mapping with a `syncs:` list", line=1))
        return None
    try:
        model = ModelFile.model_validate(data)
    except ValidationError as exc:
        problems.extend(_problems_from(exc, path, doc.lines))
        if lenient:
            loaded.extend(_sound_syncs(data, path, doc.lines))
        return None
    return model, doc.lines


def _add_prices(
    model: ModelFile,
    path: Path,
    lines: LineMap,
    prices: dict[tuple[str, str], float],
    price_at: dict[tuple[str, str], str],
    problems: list[ConfigProblem],
) -> None:
    """Add a file's ``prices:`` to the project's (``price_at``: where each was set); a price that disagrees with
    one already set is a problem."""
    for endpoint, tiers in model.prices.items():
        for tier, cents in tiers.items():
            where = f"{path}:{lines.line_for(('prices', endpoint, tier)) or '?'}"
            if (endpoint, tier) in prices and prices[(endpoint, tier)] != cents:
                problems.append(
                    ConfigProblem(
                        str(path),
                        f"prices.{endpoint}.{tier}",
                        f"{cents} cents, but {price_at[(endpoint, tier)]} says {prices[(endpoint, tier)]}",
                        line=lines.line_for(("prices", endpoint, tier)),
                        hint="give each endpoint and tier one price, in one file",
                    )
                )
                continue
            prices[(endpoint, tier)] = cents
            price_at[(endpoint, tier)] = where


def _first_of_each_name(loaded: list[LoadedSync], problems: list[ConfigProblem]) -> dict[str, LoadedSync]:
    """The first sync of each name; every later one of the same name is a problem."""
    seen: dict[str, LoadedSync] = {}
    for item in loaded:
        first = seen.get(item.spec.name)
        if first is not None:
            problems.append(
                ConfigProblem(
                    str(item.file),
                    "name",
                    f"duplicate sync name {item.spec.name!r} (also defined in {first.file}:{first.line})",
                    line=item.line,
                    hint="sync names must be unique across models/",
                )
            )
        else:
            seen[item.spec.name] = item
    return seen


def _sound_syncs(data: Mapping[str, Any], path: Path, lines: LineMap) -> list[LoadedSync]:
    """The syncs of a file that failed validation that are valid on their own (each checked alone, with the
    file's top-level keys); none when the file's own keys are wrong."""
    entries = data.get("syncs")
    if not isinstance(entries, list):
        return []
    top = {k: v for k, v in data.items() if k != "syncs"}
    try:
        ModelFile.model_validate({**top, "syncs": []})
    except ValidationError:
        return []
    out = []
    for i, entry in enumerate(entries):
        try:
            model = ModelFile.model_validate({**top, "syncs": [entry]})
        except ValidationError:
            continue
        spec = model.syncs[0]
        out.append(LoadedSync(spec, path, lines.line_for(("syncs", i)), spec.profile or model.profile, lines, index=i))
    return out


def _shared_target_problems(syncs: Sequence[LoadedSync]) -> list[ConfigProblem]:
    """Syncs writing one target table must write different columns (compared by name, without case) and key it
    alike; their struct columns and bookkeeping would otherwise overwrite each other (and every run would select
    every row of both again)."""
    by_table: dict[tuple[str, ...], list[LoadedSync]] = {}
    for item in syncs:
        t = item.spec.target
        where = (item.profile or "", (t.database or "").lower(), (t.schema_ or "").lower(), t.table.lower())
        by_table.setdefault(where, []).append(item)
    problems = []
    for items in by_table.values():
        for i, item in enumerate(items):
            for first in items[:i]:
                problem = _shared_problem(first, item)
                if problem:
                    problems.append(problem)
    return problems


def _shared_problem(first: LoadedSync, item: LoadedSync) -> ConfigProblem | None:
    a, b = first.spec, item.spec
    where = f"syncs {a.name!r} ({first.file}:{first.line}) and {b.name!r} both write table {b.target.table!r}"
    if [k.lower() for k in a.source.key] != [k.lower() for k in b.source.key]:
        return ConfigProblem(
            str(item.file),
            f"{b.name}.source.key",
            f"{where} but key it differently ({', '.join(a.source.key)} and {', '.join(b.source.key)})",
            line=item.line,
            hint="syncs sharing a table share its key; give one of them its own table",
        )
    mine = {c.lower(): c for c in a.output_columns()}
    both = sorted(c for c in b.output_columns() if c.lower() in mine)
    if not both:
        return None
    return ConfigProblem(
        str(item.file),
        f"{b.name}.target",
        f"{where}, and both would write the column(s) {', '.join(both[:5])}{', ...' if len(both) > 5 else ''}: "
        "their values and bookkeeping would overwrite each other",
        line=item.line,
        hint="give each sync sharing the table its own target.prefix (e.g. prefix: co_), or its own table",
    )
