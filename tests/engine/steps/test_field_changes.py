"""Which fields each stamp in a target still lacks: pure, no server."""

from __future__ import annotations

from typing import Any

from sixtyfour_sync.config.models import SyncSpec
from sixtyfour_sync.engine.steps.field_changes import field_changes


def _spec(struct: dict[str, Any], tier: str = "low") -> SyncSpec:
    return SyncSpec.model_validate(
        {"name": "s", "endpoint": "people", "source": {"table": "t", "key": "id"}, "struct": struct,
         "target": {"table": "x"}, "tier": tier}
    )  # fmt: skip


OLD = _spec({"email": "Email", "title": "Title"})


def _defs(*specs: SyncSpec) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for s in specs:
        out.update(s.stamp_definitions())
    return out


def test_added_changed_and_removed_fields() -> None:
    added = _spec({"email": "Email", "title": "Title", "phone": "Phone"})
    ch = field_changes(added, {OLD.spec_hash(): 7, added.spec_hash(): 3}, _defs(OLD))
    assert ch.groups == {("phone",): [OLD.spec_hash()]} and ch.rows == {("phone",): 7}
    changed = _spec({"email": "Email", "title": {"description": "Title", "type": "list[str]"}})
    assert field_changes(changed, {OLD.spec_hash(): 1}, _defs(OLD)).groups == {("title",): [OLD.spec_hash()]}
    removed = _spec({"email": "Email"})
    ch = field_changes(removed, {OLD.spec_hash(): 1}, _defs(OLD))
    assert ch.groups == {} and ch.not_whole == [OLD.spec_hash()]  # current: nothing to ask


def test_a_changed_tier_an_unknown_stamp_and_a_partial_stamp() -> None:
    medium = _spec({"email": "Email", "title": "Title"}, tier="medium")
    assert field_changes(medium, {OLD.spec_hash(): 5}, _defs(OLD)).not_whole == []  # asked whole
    assert field_changes(OLD, {"f" * 32: 5}, {}).not_whole == []  # a stamp never recorded: asked whole
    partial = OLD.stamp_definitions(missing=["title"])  # a result that lacked the title column
    [lacking] = [h for h in partial if h != OLD.spec_hash()]
    assert field_changes(OLD, {lacking: 2}, partial).groups == {("title",): [lacking]}


def test_a_fields_step_is_stamped_with_the_whole_question() -> None:
    added = _spec({"email": "Email", "title": "Title", "phone": "Phone"})
    step = added.only_fields(["phone"])
    assert list(step.struct) == ["phone"] and step.spec_hash() == added.spec_hash()
    assert step.spec_hash([]) == added.spec_hash(["email", "title"])  # the step's answer lacked phone
    assert step.stamp_definitions() == added.stamp_definitions()
