"""dbt's selection syntax for syncs: union by space, intersection by comma, methods, --exclude, disabled syncs."""

from __future__ import annotations

from pathlib import Path

import pytest

from sixtyfour_sync.config.models import LoadedSync, SyncSpec
from sixtyfour_sync.engine.selectors import explain_empty, parse_selector, select_syncs
from sixtyfour_sync.errors import ConfigError

ROOT = Path("/p")


def _sync(name: str, tags: list[str], *, endpoint: str = "people", enabled: bool = True, file: str = "a") -> LoadedSync:
    spec = SyncSpec.model_validate(
        {
            "name": name,
            "tags": tags,
            "enabled": enabled,
            "endpoint": endpoint,
            "source": {"table": "t", "key": "id"},
            "struct": {"x": "X"},
            "target": {"table": f"{name}_out"},
        }
    )
    return LoadedSync(spec, ROOT / "models" / f"{file}.yml", 1, None)


SYNCS = [
    _sync("enrich_leads", ["daily", "people"]),
    _sync("enrich_contacts", ["daily"], file="b"),
    _sync("enrich_companies", ["weekly"], endpoint="company", file="b"),
    _sync("old_leads", ["daily", "people"], enabled=False, file="sub/c"),
]


def names(select: list[str] | None, exclude: list[str] | None = None) -> list[str]:
    return [s.spec.name for s in select_syncs(SYNCS, select, exclude, root=ROOT)]


def test_parse_union_of_intersections() -> None:
    assert parse_selector(["a b", "tag:x,tag:y"]) == [["a"], ["b"], ["tag:x", "tag:y"]]
    assert parse_selector(None) == []


def test_default_is_every_enabled_sync_in_file_order() -> None:
    assert names(None) == ["enrich_leads", "enrich_contacts", "enrich_companies"]


def test_space_is_a_union_and_comma_an_intersection() -> None:
    assert names(["tag:weekly", "enrich_leads"]) == ["enrich_leads", "enrich_companies"]
    assert names(["tag:weekly enrich_leads"]) == ["enrich_leads", "enrich_companies"]
    assert names(["tag:daily,tag:people"]) == ["enrich_leads"]  # not a union, as it used to be
    assert names(["tag:daily,endpoint:people"]) == ["enrich_leads", "enrich_contacts"]


def test_globs_methods_and_paths() -> None:
    assert names(["enrich_c*"]) == ["enrich_contacts", "enrich_companies"]
    assert names(["tag:dai*"]) == ["enrich_leads", "enrich_contacts"]
    assert names(["endpoint:company"]) == ["enrich_companies"]
    assert names(["path:models/b.yml"]) == ["enrich_contacts", "enrich_companies"]
    assert names(["path:models"]) == ["enrich_leads", "enrich_contacts", "enrich_companies"]
    assert names(["name:enrich_leads"]) == ["enrich_leads"]


def test_exclude_takes_the_same_syntax() -> None:
    assert names(None, ["tag:weekly"]) == ["enrich_leads", "enrich_contacts"]
    assert names(["tag:daily"], ["enrich_contacts"]) == ["enrich_leads"]
    assert names(["tag:daily"], ["tag:daily,tag:people"]) == ["enrich_contacts"]
    assert names(["enrich_leads"], ["enrich_leads"]) == []


def test_a_disabled_sync_runs_only_when_named_exactly() -> None:
    assert "old_leads" not in names(["tag:daily"])
    assert "old_leads" not in names(["*leads"])
    assert names(["old_leads"]) == ["old_leads"]


def test_a_word_matching_nothing_is_an_error_listing_what_exists() -> None:
    with pytest.raises(ConfigError) as info:
        names(["enrich_leads", "tag:monthly"])
    text = str(info.value)
    assert "--select matched no sync for: tag:monthly" in text
    assert "enrich_contacts" in text and "weekly" in text
    with pytest.raises(ConfigError, match="--exclude matched no sync for: enrich_lead "):
        names(None, ["enrich_lead"])


@pytest.mark.parametrize("word", ["+enrich_leads", "enrich_leads+", "@enrich_leads", "config.x:y"])
def test_graph_operators_and_unknown_methods_are_refused(word: str) -> None:
    with pytest.raises(ConfigError, match=r"graph operators|unknown method"):
        names([word])


def _why(select: list[str] | None, exclude: list[str] | None = None, syncs: list[LoadedSync] = SYNCS) -> str | None:
    return explain_empty(syncs, select, exclude, root=ROOT)


def test_an_empty_intersection_says_what_each_part_matched() -> None:
    assert names(["tag:daily,endpoint:company"]) == []
    why = _why(["tag:daily,endpoint:company"])
    assert why is not None
    assert "tag:daily matched enrich_leads, enrich_contacts" in why
    assert "endpoint:company matched enrich_companies" in why
    assert "intersection that no sync is in" in why
    assert _why(["tag:daily"]) is None  # something selected: nothing to explain


def test_an_exclude_that_removes_everything_is_explained() -> None:
    why = _why(["tag:weekly"], ["endpoint:company"])
    assert why == "--select tag:weekly matched enrich_companies; --exclude endpoint:company removed enrich_companies"
    why = _why(None, ["tag:daily tag:weekly"])
    assert why is not None and why.startswith("every enabled sync (enrich_leads, enrich_contacts, enrich_companies)")
    assert "--exclude tag:daily tag:weekly removed" in why


def test_no_enabled_sync_is_explained() -> None:
    assert _why(None, syncs=[SYNCS[3]]) == "every sync is disabled (enabled: false): old_leads"
    assert _why(None, syncs=[]) is not None
