"""The background finisher's queue and retries, with fake finish/lookup functions and a fake clock."""

from __future__ import annotations

from collections.abc import Mapping

from sixtyfour_sync.receiver.finisher import Finisher


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _due(f: Finisher) -> list:  # the items the worker would take now
    with f._cond:
        items = [i for i in f._items.values() if i.due <= f._clock()]
        for i in items:
            i.due = float("inf")
        return items


def test_a_task_is_finished_once_and_grouped_by_sync() -> None:
    calls: list[tuple[str, list[str]]] = []

    def finish(sync: str, tasks: list[str]) -> Mapping[str, str | None]:
        calls.append((sync, sorted(tasks)))
        return {t: "merged" for t in tasks}

    clock = Clock()
    f = Finisher(finish, lambda t: None, clock=clock)
    f.enqueue("a", "s1")
    f.enqueue("b", "s1")
    f.enqueue("a", "s1")  # a second event for a queued task does not queue it twice
    f.step(_due(f))
    assert calls == [("s1", ["a", "b"])] and f.pending() == [] and f.outcomes == {"a": "merged", "b": "merged"}


def test_a_locked_or_unfinished_task_is_retried_with_backoff_then_left_to_the_next_run() -> None:
    answers = iter(["locked", "submitted", "error"] + ["submitted"] * 50)
    clock = Clock()
    f = Finisher(lambda s, ts: {t: next(answers) for t in ts}, lambda t: "s", clock=clock, give_up_after=30)
    f.enqueue("a", "s")
    delays = []
    while f.pending():
        before = clock.now
        f.step(_due(f))
        if not f.pending():
            break
        [item] = f._items.values()
        delays.append(item.due - before)
        clock.now = item.due
    assert delays[:4] == [2.0, 4.0, 8.0, 16.0]
    assert f.outcomes == {"a": "gave up"}


def test_an_unknown_task_is_looked_up_again_for_a_while_then_ignored() -> None:
    known: dict[str, str] = {}
    clock = Clock()
    finished: list[str] = []
    f = Finisher(
        lambda s, ts: finished.extend(ts) or {t: "merged" for t in ts},
        known.get,
        clock=clock,
        unknown_grace=10,
    )
    f.enqueue("late", None)
    f.enqueue("never", None)
    f.step(_due(f))
    assert sorted(f.pending()) == ["late", "never"] and not finished
    known["late"] = "s"  # the run recorded its task id meanwhile
    clock.now += 2
    f.step(_due(f))
    assert finished == ["late"] and f.outcomes["late"] == "merged"
    clock.now += 60
    f.step(_due(f))
    assert f.outcomes["never"] == "ignored" and f.pending() == []


def test_a_failing_finish_is_retried_not_fatal() -> None:
    clock = Clock()
    state = {"n": 0}

    def finish(sync: str, tasks: list[str]) -> Mapping[str, str | None]:
        state["n"] += 1
        if state["n"] == 1:
            raise RuntimeError("warehouse is down")
        return {t: "merged" for t in tasks}

    f = Finisher(finish, lambda t: "s", clock=clock)
    f.enqueue("a", "s")
    f.step(_due(f))
    assert f.pending() == ["a"]
    clock.now += 5
    f.step(_due(f))
    assert f.outcomes == {"a": "merged"}


def test_the_worker_thread_runs_and_stops() -> None:
    f = Finisher(lambda s, ts: {t: "merged" for t in ts}, lambda t: "s")
    f.start()
    f.enqueue("a", "s")
    assert f.wait_idle(5)
    f.stop(5)
    assert f.outcomes == {"a": "merged"}
