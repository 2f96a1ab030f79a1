"""The progress file a kernel's loops write for `rqakit reproduce`: counts as tqdm keeps them."""
import json

from rqakit import progress


def events(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_bar_reports_each_count_and_its_total_once_closed(tmp_path, monkeypatch):
    path = tmp_path / "progress.jsonl"
    monkeypatch.setenv(progress.ENV, str(path))
    monkeypatch.setattr(progress, "EVERY_S", 0.0)
    bar = progress.Bar(total=10, desc="encode", disable=False)      # the encoders' manual updates
    for n in (3, 3, 3, 1):
        bar.update(n)
    bar.close()
    bar.close()                                                     # a second close adds nothing
    counts = [e["n"] for e in events(path)]
    assert counts[:4] == [3, 6, 9, 10] and set(counts[4:]) <= {10} and len(counts) <= 5
    assert {e["total"] for e in events(path)} == {10} and {e["desc"] for e in events(path)} == {"encode"}
    path.unlink()
    for _ in progress.Bar(range(5), desc="train", initial=2, total=7, disable=False):   # a resumed loop
        pass
    last = events(path)[-1]
    assert (last["n"], last["start"], last["total"]) == (7, 2, 7)


def test_a_disabled_bar_or_no_progress_file_writes_nothing(tmp_path, monkeypatch):
    path = tmp_path / "progress.jsonl"
    monkeypatch.setenv(progress.ENV, str(path))
    for _ in progress.Bar(range(5), disable=True):                  # ranks other than 0
        pass
    assert not path.exists()
    monkeypatch.delenv(progress.ENV)
    for _ in progress.Bar(range(5), disable=False):
        pass
    assert not path.exists()
