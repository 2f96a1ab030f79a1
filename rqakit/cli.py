"""`rqakit` command line: argument parsing only; the work is in the modules it calls."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .errors import Interrupted, RqaError


# ----------------------------------------------------------------------------- argument types
# argparse turns a ValueError/ArgumentTypeError of a `type=` function into one usage line naming
# the option, before any dataset or model is loaded.
def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def probability(text: str) -> float:
    """A threshold: strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"{text} must lie strictly between 0 and 1")
    return value


def writable_folder(text: str) -> str:
    """A folder the command can create files in (made if missing)."""
    from .artifacts import unwritable_reason

    reason = unwritable_reason(Path(text))
    if reason:
        raise argparse.ArgumentTypeError(f"{reason}; choose a folder you can write to")
    return text


def writable_file(text: str) -> str:
    """A file path whose folder exists and can be written to."""
    from .artifacts import unwritable_reason

    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"folder {path.parent} does not exist; create it or choose another path")
    reason = unwritable_reason(path.parent)
    if reason:
        raise argparse.ArgumentTypeError(f"{reason}; choose a folder you can write to")
    return text


def check_workdir(cfg) -> None:
    """runtime.workdir (the stage cache) must be writable before any stage starts."""
    from .artifacts import unwritable_reason

    reason = unwritable_reason(Path(cfg.runtime.workdir))
    if reason:
        raise RqaError(f"runtime.workdir {cfg.runtime.workdir}: {reason}; "
                       "choose another with --set runtime.workdir=DIR")


def _cmd_data_stats(args) -> dict:
    from .data import dataset_stats

    return dataset_stats(args.dataset)


def _cmd_evaluate(args) -> dict:
    from .commands import evaluate

    return evaluate(
        dataset=args.dataset, retriever=args.retriever, pooling=args.pooling, max_length=args.max_length,
        query_max_length=args.query_max_length, rerank=args.rerank, top=args.top, run_out=args.run_out,
        depth=args.depth, use_titles=not args.no_titles, measures=args.measures, batch_size=args.batch_size,
    )


def _cmd_reproduce(args) -> dict:
    from .pipeline import reproduce

    return reproduce(args.profile, out=args.out, force=args.force, overrides=args.set, chapters=args.chapters,
                     strict=args.check, record=args.record)


def _cmd_stage(args) -> dict:
    from .config import load_config
    from .stages import run_named_stage

    cfg = load_config(args.profile, args.set)
    check_workdir(cfg)
    try:
        folder = run_named_stage(args.name, cfg, force=args.force)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted in stage {args.name}; run the same command again to resume: finished "
                          "stages are cached and training restarts from its last checkpoint") from None
    return {"stage": args.name, "folder": str(folder)}


def _cmd_study(args) -> dict:
    from .config import load_config
    from .pipeline import build_study
    from .study import run_queue

    cfg = load_config(args.profile, args.set)
    check_workdir(cfg)
    trained = []
    if not args.report:
        try:
            trained = run_queue(args.profile, conditions=args.conditions, seeds=args.seeds, out=args.out,
                                base_overrides=args.set)
        except KeyboardInterrupt:
            raise Interrupted("interrupted; `rqakit study` again resumes: exported runs are kept, the run in "
                              "training restarts from its last checkpoint") from None
    return {"trained": trained, **build_study(args.profile, out=args.out, overrides=args.set)}


def _cmd_runs(args) -> dict:
    from .config import load_config
    from .stages import stage_results

    return stage_results(load_config(args.profile, args.set), clean=args.clean)


def _cmd_plan(args) -> dict:
    from .config import load_config
    from .plan import plan

    result = plan(load_config(args.profile, args.set), peak_gflops=args.peak_gflops, study=args.study)
    if "warning" in result:
        print(f"rqakit: warning: {result['warning']}", file=sys.stderr)
    return result


def _cmd_audit(args) -> dict:
    from .audit import run_audit
    from .config import load_config

    cfg = load_config(args.profile, args.set)
    check_workdir(cfg)
    kwargs = {"thresholds": args.thresholds} if args.thresholds else {}
    return run_audit(cfg, seed=args.seed, teacher=args.teacher, force=args.force, **kwargs)


def _cmd_search(args) -> dict | str:
    from .ask import ask, format_answer

    answer = ask(args.query, retriever=args.retriever, dataset=args.dataset, k=args.k, rerank=args.rerank,
                 depth=args.depth, query_id=args.query_id, use_titles=False if args.no_titles else None,
                 batch_size=args.batch_size)
    return answer if args.json else format_answer(answer)


def _cmd_export(args) -> dict:
    from .models.st_export import export_sentence_transformers

    written = export_sentence_transformers(args.folder)
    kind = json.loads(Path(args.folder, "rqakit.json").read_text(encoding="utf-8"))["kind"]
    return {"folder": args.folder, "kind": kind, "written": [str(p) for p in written]}


def _cmd_init(args) -> dict:
    from .data.starter import init_profile

    return init_profile(args.profile_file, data=args.data, source=args.source, force=args.force,
                        log=lambda message: print(message, file=sys.stderr))


def _cmd_config(args) -> dict:
    from .config import field_help, load_config

    if args.help_fields:
        return field_help()
    return load_config(args.profile, args.set).to_dict()


DEFAULT_PROFILE = "scifact"   # every command's, the README's main job


class OneLineParser(argparse.ArgumentParser):
    """Usage errors on one line (the full usage of `evaluate` spans several), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"rqakit: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="rqakit", description="RocketQAv2 reproducibility kit")
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="dataset utilities").add_subparsers(dest="data_command", required=True)
    stats = data.add_parser("stats", help="counts of docs, queries and qrels of an ir_datasets ID")
    stats.add_argument("dataset")
    stats.set_defaults(func=_cmd_data_stats)

    ev = sub.add_parser("evaluate", help="retrieve (and re-rank) a split, print ir_measures metrics as JSON")
    ev.add_argument("--dataset", required=True, help="ir_datasets ID with queries and qrels")
    ev.add_argument("--retriever", required=True, help="bm25 | a backbone name (minilm, tiny) | a checkpoint folder")
    ev.add_argument("--pooling", choices=["cls", "mean"], default=None,
                    help="pooling of a backbone retriever (default: cls; checkpoints keep theirs)")
    ev.add_argument("--max-length", type=positive_int, default=None, help="passage max length in tokens")
    ev.add_argument("--query-max-length", type=positive_int, default=None, help="query max length in tokens")
    ev.add_argument("--rerank", default=None, help="cross-encoder checkpoint folder to re-rank with")
    ev.add_argument("--top", type=positive_int, default=30, help="re-rank this many candidates per query")
    ev.add_argument("--depth", type=positive_int, default=100, help="retrieval depth")
    ev.add_argument("--run-out", type=writable_file, default=None, help="write the final run as a TREC run file")
    ev.add_argument("--no-titles", action="store_true", help="passage text without titles")
    ev.add_argument("--measures", nargs="+", default=None, help="ir_measures names (default nDCG@10 RR@10 R@100)")
    ev.add_argument("--batch-size", type=positive_int, default=64, help="encoding and re-ranking batch size")
    ev.set_defaults(func=_cmd_evaluate)

    rp = sub.add_parser("reproduce", help="run a profile's notebooks with papermill and write its report")
    rp.add_argument("--profile", default=DEFAULT_PROFILE)
    rp.add_argument("--out", type=writable_folder, default=None,
                    help="report folder (default: <workdir>/<profile>/report, checked against the committed "
                         "reports/<profile>; reports/<profile> itself for a profile without one)")
    rp.add_argument("--check", action="store_true",
                    help="fail (exit 2) when the results differ from the committed ones beyond the tolerance")
    rp.add_argument("--record", nargs="?", const="", default=None, metavar="NOTE",
                    help="append this reproduction to the committed report's log (reproductions.json/.md)")
    rp.add_argument("--force", action="store_true", help="rerun chapters and stages even when cached")
    rp.add_argument("--chapters", nargs="+", default=None, help="run only these chapters")
    rp.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides, e.g. joint.lr=2e-5")
    rp.set_defaults(func=_cmd_reproduce)

    st = sub.add_parser("stage", help="run one stage of a profile (warmup_de, warmup_ce, augment, joint, ...)")
    st.add_argument("name")
    st.add_argument("--profile", default=DEFAULT_PROFILE)
    st.add_argument("--force", action="store_true")
    st.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    st.set_defaults(func=_cmd_stage)

    pl = sub.add_parser("plan", help="tokens, FLOPs and estimated wall time of every stage of a profile's report, "
                                     "and of those still to run")
    pl.add_argument("--profile", default=DEFAULT_PROFILE)
    pl.add_argument("--peak-gflops", type=float, default=None,
                    help="the machine's matmul peak (default: a few seconds of timing, low on a busy machine)")
    pl.add_argument("--study", action="store_true",
                    help="also the runs the distillation study has left (`rqakit study`) and the stages they need")
    pl.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    pl.set_defaults(func=_cmd_plan)

    sy = sub.add_parser("study", help="the distillation study: dynamic vs static over seeds under each condition "
                                      "(trains what is missing, exports every run, writes reports/<profile>-study)")
    sy.add_argument("--profile", default=DEFAULT_PROFILE)
    sy.add_argument("--conditions", nargs="+", default=None, help="only these conditions (default: all, in order)")
    sy.add_argument("--seeds", nargs="+", type=int, default=None, help="only these seeds (default: every seed planned)")
    sy.add_argument("--report", action="store_true", help="train nothing: the report from the exported runs alone")
    sy.add_argument("--out", type=writable_folder, default=None, help="study folder (default reports/<profile>-study)")
    sy.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    sy.set_defaults(func=_cmd_study)

    rn = sub.add_parser("runs", help="list a profile's cached stage results (one folder per config); --clean removes "
                                      "those the current config does not use")
    rn.add_argument("--profile", default=DEFAULT_PROFILE)
    rn.add_argument("--clean", action="store_true", help="remove results of other configs and unfinished work")
    rn.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    rn.set_defaults(func=_cmd_runs)

    au = sub.add_parser("audit", help="hide one positive of every multi-positive training query and measure how "
                                      "many of them the denoising drops (precision/recall per threshold)")
    au.add_argument("--profile", default=DEFAULT_PROFILE)
    au.add_argument("--seed", type=int, default=0, help="which positive of each query is hidden")
    au.add_argument("--teacher", choices=["retrain", "profile"], default="retrain",
                    help="retrain: warm models trained without the hidden labels (default); profile: the profile's "
                         "own warm models, which saw them (an upper bound)")
    au.add_argument("--thresholds", nargs="+", type=probability, default=None,
                    help="negative thresholds of the curve (default 0.02 ... 0.8)")
    au.add_argument("--force", action="store_true")
    au.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    au.set_defaults(func=_cmd_audit)

    se = sub.add_parser("search", help="a trained system's top k of a collection for one query (corpus embeddings "
                                       "cached: a second query costs seconds)")
    se.add_argument("query", nargs="?", default=None, help="the query text (optional with --query-id)")
    se.add_argument("--retriever", required=True, help="retriever folder (or a backbone name, read zero-shot)")
    se.add_argument("--rerank", default=None, help="re-ranker folder: re-score the retriever's top --depth")
    se.add_argument("--dataset", required=True, help="ir_datasets ID or profile name (its collection)")
    se.add_argument("--k", type=positive_int, default=10, help="how many documents to print")
    se.add_argument("--depth", type=positive_int, default=None, help="candidates re-ranked (default max(k, 30))")
    se.add_argument("--query-id", default=None, help="a query of the collection's splits: its text and qrels labels")
    se.add_argument("--no-titles", action="store_true", help="passage text without titles")
    se.add_argument("--batch-size", type=positive_int, default=64, help="encoding and re-ranking batch size")
    se.add_argument("--json", action="store_true", help="print the answer as JSON")
    se.set_defaults(func=_cmd_search)

    ex = sub.add_parser("export", help="add the sentence-transformers files to a retriever or re-ranker folder saved "
                                       "by the kit (weights untouched)")
    ex.add_argument("folder")
    ex.set_defaults(func=_cmd_export)

    it = sub.add_parser("init", help="check your own collection (a BEIR folder) and write a starting profile for it, "
                                     "which `rqakit plan` and `rqakit reproduce` take as is")
    it.add_argument("profile_file", metavar="PROFILE.yaml", help="the profile to write")
    it.add_argument("--data", required=True, metavar="FOLDER",
                    help="a BEIR folder: corpus.jsonl, queries.jsonl, qrels/train.tsv (and dev.tsv, test.tsv)")
    it.add_argument("--from", dest="source", default=DEFAULT_PROFILE, metavar="PROFILE",
                    help=f"the built-in profile whose settings to start from (default {DEFAULT_PROFILE}; toy: minutes)")
    it.add_argument("--force", action="store_true", help="overwrite an existing profile file")
    it.set_defaults(func=_cmd_init)

    cf = sub.add_parser("config", help="print a profile's resolved config as JSON")
    cf.add_argument("--profile", default=DEFAULT_PROFILE)
    cf.add_argument("--help-fields", action="store_true", help="print every config key with its help text")
    cf.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    cf.set_defaults(func=_cmd_config)
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error, already printed on one line (2)
        return exc.code if isinstance(exc.code, int) else 2
    start = time.time()
    try:
        result = args.func(args)
    except Interrupted as exc:
        print(f"rqakit: {exc}", file=sys.stderr)
        return 130
    except RqaError as exc:
        print(f"rqakit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # reproduce reports where it stopped as an Interrupted (an RqaError)
        print("rqakit: interrupted; run the same command again to resume: finished stages are cached and "
              "training restarts from its last checkpoint", file=sys.stderr)
        return 130
    except OSError as exc:  # a disk that filled up, a folder made read-only during the run
        where = f" {exc.filename}" if exc.filename else ""
        print(f"rqakit: error: cannot write or read{where}: {exc.strerror or exc}; "
              "check the path's permissions and free space, then rerun", file=sys.stderr)
        return 2
    if isinstance(result, dict) and args.command == "evaluate":
        result.setdefault("wall_time_s", round(time.time() - start, 2))
    if isinstance(result, str):   # a command that prints a table (search)
        print(result)
        return 0
    print(json.dumps(result, indent=None if args.command != "config" else 2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
