"""What `run` tells as it goes and when it ends: run k of N with the time left, and the next commands."""

from __future__ import annotations

import shlex

from lambda_search.next_steps import invoked_as, next_commands
from lambda_search.sweep.pace import duration, pace_line


def test_the_first_run_says_k_of_n_and_when_the_time_left_will_be_known():
    assert pace_line(0, 20, [], "trial 0 of q, λ = 0") == (
        "run 1 of 20 (trial 0 of q, λ = 0); time left: after this worker's first run")


def test_later_runs_say_the_time_left_from_this_workers_mean_run():
    # 5 finished in the study, so this is run 6 and 15 runs are left with it, at a mean of 10 s.
    assert pace_line(5, 20, [8.0, 12.0], "trial 5 of q, λ = 0.001") == (
        "run 6 of 20 (trial 5 of q, λ = 0.001); about 2 min 30 s left at 10.0 s a run (this worker's mean)")


def test_a_fused_job_is_its_runs_and_counts_each_at_its_share_of_the_time():
    # 8 finished of 40 and a job of 4: runs 9-12; 32 left at 10 s each.
    assert pace_line(8, 40, [10.0] * 4, "a fused job of trials 8, 9, 10, 11", 4) == (
        "runs 9–12 of 40 (a fused job of trials 8, 9, 10, 11); about 5 min 20 s left at 10.0 s a run "
        "(this worker's mean)")


def test_durations_read_as_a_person_says_them():
    assert [duration(s) for s in (44.6, 200, 7500)] == ["45 s", "3 min 20 s", "2 h 5 min"]


def test_the_cli_is_named_as_it_was_invoked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert invoked_as(".venv/bin/lambda-search") == ".venv/bin/lambda-search"  # after `make run`
    assert invoked_as(str(tmp_path / ".venv" / "bin" / "lambda-search")) == ".venv/bin/lambda-search"
    assert invoked_as("/usr/lib/python3/pytest") == "lambda-search"  # in-process: the plain name


def test_the_next_commands_parse_and_keep_the_storage_out_when_the_environment_has_it():
    with_storage = next_commands(".venv/bin/lambda-search", "sqlite:///studies/a b.db", "q")
    assert shlex.split(with_storage[0]) == [".venv/bin/lambda-search", "status", "--storage",
                                            "sqlite:///studies/a b.db", "--study", "q"]
    assert [shlex.split(line)[1:] for line in next_commands("lambda-search", None, "q")] == [
        ["status", "--study", "q"], ["report", "--study", "q", "-o", "report.html"],
        ["export", "--study", "q", "-o", "best.yaml"]]
