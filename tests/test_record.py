"""The local record of every run: LOCAL_RESULTS_DIR/.runs/<run-id>.json, and the one place a state changes."""
import json
from pathlib import Path

import pytest

from pystributed import record, results
from pystributed.results import RunResult, State

OLD, NEW = "20261125-101502-3fa9c1", "20261126-090000-aaaaaa"


def test_a_record_is_saved_and_loaded_whole(tmp_path):
    result = RunResult(OLD, exit_code=0, local_path=tmp_path / "r", files=["a"], status="succeeded",
                       server="gpu", config={"REMOTE_SERVER": "gpu"})
    results.save_record(tmp_path / "results", result)
    assert results.load_record(tmp_path / "results", OLD) == result
    saved = json.loads((tmp_path / "results" / ".runs" / f"{OLD}.json").read_text())
    assert saved["local_path"] == str(tmp_path / "r")
    assert results.load_record(tmp_path / "results", NEW) is None
    # no temporary file left
    assert [p.name for p in (tmp_path / "results" / ".runs").iterdir()] == [f"{OLD}.json"]


def test_set_state_changes_the_state_and_its_fields_and_saves_at_once(tmp_path):
    result = RunResult(OLD)
    results.set_state(tmp_path, result, State.RUNNING)
    assert results.load_record(tmp_path, OLD).status == State.RUNNING and result.ended == ""
    results.set_state(tmp_path, result, "failed", exit_code=2, image="img")
    saved = results.load_record(tmp_path, OLD)
    assert (saved.status, saved.exit_code, saved.image) == (State.FAILED, 2, "img") and saved.ended
    ended = saved.ended
    results.set_state(tmp_path, result, State.INTERRUPTED)
    assert results.load_record(tmp_path, OLD).ended == ended  # an end stays where it was
    with pytest.raises(ValueError):
        results.set_state(tmp_path, result, "lost")


@pytest.mark.parametrize(("state", "ended"), [
    ("starting", False), ("running", False), ("detached", False),
    ("succeeded", True), ("failed", True), ("interrupted", True), ("cancelled", True)])
def test_which_states_are_an_end(state, ended):
    assert State(state).ended is ended and str(State(state)) == state


def test_runs_are_listed_newest_first(tmp_path):
    assert str(results.runs(tmp_path)) == "no runs yet"
    results.save_record(tmp_path, RunResult(OLD, exit_code=0, status="succeeded", server="gpu",
                                            started="2026-11-25T10:15:02+00:00",
                                            ended="2026-11-25T10:15:04.5+00:00", files=["a", "b"]))
    results.save_record(tmp_path, RunResult(NEW, status="running", server="local"))
    runs = results.runs(tmp_path)
    assert [r.run_id for r in runs] == [NEW, OLD]
    assert str(runs).splitlines()[1] == f"{OLD}  succeeded  0  2.5s  gpu  2 files"
    html = runs._repr_html_()
    assert html.startswith("<table><tr><th>run</th>")
    assert f"<td>{NEW}</td><td>running</td><td>None</td>" in html


def test_two_runs_of_one_second_are_listed_in_the_order_they_started(tmp_path):
    early, late = "20261125-101502-ffffff", "20261125-101502-000000"  # their ids sort the other way
    results.save_record(tmp_path, RunResult(late, server="gpu", started="2026-11-25T10:15:02.900+00:00"))
    results.save_record(tmp_path, RunResult(early, server="gpu", started="2026-11-25T10:15:02.100+00:00"))
    assert [r.run_id for r in results.runs(tmp_path)] == [late, early]


def test_write_atomically_replaces_whole(tmp_path):
    path = Path(tmp_path) / "f.json"
    record.write_atomically(path, "one")
    record.write_atomically(path, "two")
    assert path.read_text() == "two" and [p.name for p in tmp_path.iterdir()] == ["f.json"]
