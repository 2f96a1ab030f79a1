"""Time over attempts: a stage or chapter killed and resumed counts the time of both attempts."""
import json
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from rqakit import runtime
from rqakit.artifacts import ATTEMPTS, KIT_COMMIT, read_manifest, run_stage, work_dir
from rqakit.attempts import Attempts


def test_a_killed_attempt_leaves_its_time_and_the_next_one_adds_to_it(tmp_path):
    path = tmp_path / "attempts.json"
    script = textwrap.dedent(f"""
        import time
        from rqakit.attempts import Attempts
        with Attempts({str(path)!r}, every_s=0.05).running():
            print("started", flush=True)
            time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "started"
    time.sleep(0.6)
    child.send_signal(signal.SIGKILL)                    # no handler runs: only the heartbeat's record is left
    child.wait()
    killed = json.loads(path.read_text())
    assert len(killed) == 1 and 0.4 <= killed[0]["elapsed_s"] <= 5.0
    clock = Attempts(path)
    with clock.running():
        pass
    spent = clock.totals(1.5)
    assert spent["attempts"] == 2
    assert spent["wall_time_s"] == pytest.approx(killed[0]["elapsed_s"] + 1.5, abs=1e-3)


def test_an_interrupted_attempt_is_recorded_on_the_way_out(tmp_path):
    path = tmp_path / "attempts.json"
    with pytest.raises(KeyboardInterrupt), Attempts(path, every_s=60).running():
        time.sleep(0.2)
        raise KeyboardInterrupt
    recorded = json.loads(path.read_text())
    assert len(recorded) == 1 and recorded[0]["elapsed_s"] >= 0.2
    assert 0.0 <= recorded[0]["cpu_s"] < 0.2      # asleep: next to no CPU


def test_a_resumed_stage_manifest_sums_its_attempts(tmp_path):
    folder = tmp_path / "stage" / "h1"
    calls = []

    def build(out):
        calls.append(1)
        time.sleep(0.3)
        if len(calls) == 1:
            raise KeyboardInterrupt   # a kill that Python sees; SIGKILL is the heartbeat's case above
        (out / "result.txt").write_text("ok")

    quiet = lambda *_: None  # noqa: E731
    with pytest.raises(KeyboardInterrupt):
        run_stage(folder, "h1", build, log=quiet)
    first = json.loads((work_dir(folder) / ATTEMPTS).read_text())
    assert len(first) == 1 and first[0]["elapsed_s"] >= 0.3
    run_stage(folder, "h1", build, log=quiet)
    manifest = read_manifest(folder)
    assert manifest["attempts"] == 2 and not work_dir(folder).exists()
    assert manifest["wall_time_s"] >= 0.6
    assert manifest["git_commit"] == KIT_COMMIT and manifest["git_commits"] == [KIT_COMMIT]
    # the sleeps used no CPU: the process's CPU seconds say the stage had the cores a fraction of its time
    assert manifest["cpu_s"] is not None and manifest["cpu_s"] < 0.5 * manifest["wall_time_s"]
    assert manifest["threads"] >= 1
    assert manifest["compute_dtype"] == runtime.compute_dtype_name() and "bf16" in manifest["machine"]
    assert manifest["cpu_share"] == pytest.approx(manifest["cpu_s"] / (manifest["threads"] * manifest["wall_time_s"]), abs=0.01)


def test_each_attempt_keeps_the_commit_it_ran_and_the_totals_list_them_in_order(tmp_path):
    """A stage resumed after a checkout ran two versions of the kit: the manifest names both."""
    path = tmp_path / "attempts.json"
    path.write_text(json.dumps([{"elapsed_s": 5.0, "git_commit": "aaa1111"},
                                {"elapsed_s": 1.0},                       # an attempt outside a checkout
                                {"elapsed_s": 5.0, "git_commit": "bbb2222"}]))
    clock = Attempts(path, commit="aaa1111")
    with clock.running():
        clock.record()                                   # what a heartbeat writes
    assert json.loads(path.read_text())[-1]["git_commit"] == "aaa1111"
    assert clock.totals(1.0)["git_commits"] == ["aaa1111", "bbb2222"]


def test_the_commit_is_dirty_only_when_the_code_differs(tmp_path):
    from rqakit.artifacts import git_commit

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "rqakit").mkdir()
    (tmp_path / "reports").mkdir()
    (tmp_path / "rqakit" / "a.py").write_text("x = 1\n")
    (tmp_path / "reports" / "r.md").write_text("old\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=k", "-c", "user.email=k@k", "commit", "-q", "-m", "c")
    clean = git_commit(tmp_path / "rqakit")
    assert clean and not clean.endswith("-dirty")
    (tmp_path / "reports" / "r.md").write_text("new\n")          # a report being rewritten
    assert git_commit(tmp_path / "rqakit") == clean
    (tmp_path / "rqakit" / "a.py").write_text("x = 2\n")         # the code changed
    assert git_commit(tmp_path / "rqakit") == clean + "-dirty"
