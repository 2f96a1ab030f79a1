"""`rqakit init PROFILE.yaml --data FOLDER [--from scifact]`: check a BEIR folder and write a
starting profile for it, the settings of a built-in profile with a `data:` section of its own.

    init_profile("my_profile.yaml", data="my_collection", source="toy")
    # -> {"profile": ..., "docs": 400, "splits": {"train": {...}, "test": {...}}, "eval": "test", ...}

The evaluation split is the collection's test split, else a seeded hold-out of the train queries
(data.eval: null). The profile is written whole or not at all, and only after `load_config` has read
it back; an existing file is replaced only with `force`.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import yaml

from rqakit.atomic import atomic_path
from rqakit.config import (
    PROFILES_DIR,
    DataConfig,
    FilesConfig,
    collection_files,
    field_help,
    load_config,
    profile_names,
    read_profile,
)
from rqakit.data.collection import Split
from rqakit.data.files import check_collection
from rqakit.data.loading import holdout
from rqakit.errors import RqaError

_SECTION = re.compile(r"([A-Za-z_]\w*):")


def _target(profile: str | os.PathLike, force: bool) -> Path:
    target = Path(profile)
    if target.suffix not in (".yaml", ".yml"):
        raise RqaError(f"{target}: a profile is a .yaml file; name it e.g. {target.name}.yaml")
    if target.stem in profile_names():
        raise RqaError(f"{target}: '{target.stem}' is a built-in profile's name (its stage cache and report would "
                       "be shared); name the file otherwise")
    if target.is_dir():
        raise RqaError(f"{target} is a folder; give the profile's file name")
    if not target.parent.is_dir():
        raise RqaError(f"folder {target.parent} does not exist; create it or write the profile elsewhere")
    if target.exists() and not force:
        raise RqaError(f"{target} exists; pass --force to overwrite it, or choose another name")
    return target


def _source(source: str) -> Path:
    path = Path(source) if Path(source).suffix else PROFILES_DIR / f"{source}.yaml"
    if not path.is_file():
        raise RqaError(f"unknown profile {source!r} for --from; choose one of: {', '.join(profile_names())}")
    return path


def _sections(text: str) -> list[tuple[str, list[str]]]:
    """The top-level sections of a profile's YAML as (name, lines), comments kept; the leading
    comment block (the profile's own description) dropped."""
    sections: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        match = _SECTION.match(line)
        if match:
            sections.append((match.group(1), [line]))
        elif sections:
            sections[-1][1].append(line)
    return sections


def _value(value) -> str:
    """A YAML value: plain where it reads back the same, else JSON (JSON is YAML)."""
    if isinstance(value, str) and re.fullmatch(r"[\w./-]+", value) and yaml.safe_load(value) == value:
        return value
    return json.dumps(value)


def _commented(line: str, comment: str) -> str:
    return f"{line.ljust(28)} # {comment}"


def _eval_choice(counts: dict, data: dict) -> tuple[str | None, str]:
    """The evaluation split and the sentence that says how it was chosen."""
    if "test" in counts:
        return "test", f"the collection's test split ({counts['test']['queries']} queries)"
    fraction = data.get("eval_fraction", DataConfig.eval_fraction)
    seed = data.get("split_seed", DataConfig.split_seed)
    train = counts["train"]["queries"]
    if train < 2:
        raise RqaError(f"the train split has {train} query and no test split; a seeded evaluation split needs at least 2")
    held = len(holdout(Split("init", dict.fromkeys(map(str, range(train)), ""), {}), fraction, seed)[1].queries)
    return None, (f"no test split, so {held} of the {train} train queries ({fraction:.0%}) are held out for evaluation "
                  f"by data.split_seed = {seed} (data.eval: null)")


def render(name: str, source: str, rel_data: str, counts: dict, eval_split: str | None, eval_note: str,
           source_text: str, source_data: dict) -> str:
    """The profile's YAML: a commented data section, then the source profile's other sections."""
    helps = field_help()
    splits = "; ".join(f"{s} {c['queries']} queries ({c['qrels']} qrels)" for s, c in counts.items() if s != "docs")
    lines = [f"# {name}: RocketQAv2 on your own collection, written by `rqakit init --from {source}`.",
             f"# Collection {rel_data} (a BEIR folder): {counts['docs']} docs; {splits}.",
             f"# Evaluation: {eval_note}.",
             f"# The sections after data: are the {source} profile's, comments included (they speak of its collection).",
             "# Next: rqakit plan --profile <this file>, then rqakit reproduce --profile <this file>.",
             "data:",
             "  files:",
             _commented(f"    beir: {_value(rel_data)}", "corpus.jsonl, queries.jsonl, qrels/<split>.tsv; from this folder"),
             _commented("  train: train", "the split that trains: the queries qrels/train.tsv judges"),
             _commented(f"  eval: {_value(eval_split)}", "the reported split; null: a split_seed hold-out of train")]
    keys = [k for k in source_data if k not in ("train", "eval", "files")]
    if eval_split is None:
        keys = list(dict.fromkeys(["eval_fraction", "split_seed", *keys]))
    for key in keys:
        value = source_data.get(key, getattr(DataConfig, key, None))
        lines.append(_commented(f"  {key}: {_value(value)}", helps[f"data.{key}"]))
    for section, body in _sections(source_text):
        if section not in ("data", "notes"):
            lines.extend(body)
    lines += ["notes:", f"  collection: {_value(f'{rel_data} (a BEIR folder)')}",
              f"  settings: {_value(f'the {source} profile (rqakit init --from {source})')}"]
    return "\n".join(lines).rstrip() + "\n"


def init_profile(profile, data, source: str = "scifact", force: bool = False, log=None) -> dict:
    """Check the BEIR folder `data`, write the profile `profile` for it, return what it found."""
    log = log or (lambda message: None)
    target = _target(profile, force)
    source_path = _source(source)
    folder = Path(data).expanduser().resolve()
    files = collection_files(FilesConfig(beir=str(folder)))
    if "train" not in files["qrels"]:
        raise RqaError(f"{folder / 'qrels' / 'train.tsv'} does not exist; a collection to train on needs the qrels of "
                       "its train split there (dev.tsv and test.tsv are optional)")
    checked = check_collection(files)
    counts = checked.counts()
    raw = read_profile(source_path)
    source_data = raw.get("data") or {}
    eval_split, eval_note = _eval_choice(counts, source_data)
    rel_data = os.path.relpath(folder, target.resolve().parent)
    text = render(target.stem, source_path.stem, rel_data, counts, eval_split, eval_note, source_path.read_text(),
                  source_data)
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
        cfg = load_config(str(tmp))   # what plan and reproduce will read: it loads, or nothing is written
    log(f"{folder}: {counts['docs']} docs; " + "; ".join(
        f"{s}: {c['queries']} queries, {c['qrels']} qrels" for s, c in counts.items() if s != "docs"))
    log(f"evaluation: {eval_note}")
    if "dev" in counts:
        log("the dev split is not used; set data.eval: dev in the profile to report on it instead")
    log(f"wrote {target} (settings of the {source_path.stem} profile); next: rqakit plan --profile {target}, "
        f"then rqakit reproduce --profile {target}")
    return {"profile": str(target), "data": str(folder), "docs": counts["docs"],
            "splits": {s: c for s, c in counts.items() if s != "docs"}, "train": "train", "eval": eval_split,
            "evaluation": eval_note, "train_id": cfg.data.train, "eval_id": cfg.data.eval, "settings_from": source_path.stem}
