"""The distillation study: does dynamic listwise distillation beat static at this scale, and if not,
which condition hides the effect (Table 4's central row, asked with enough seeds to answer it).

    rqakit study --profile scifact            # train what is missing, export each run, write the report
    rqakit study --profile scifact --report   # the report from the committed run files alone
    rqakit plan --profile scifact --study     # what the runs still to train will cost here

Every condition trains the same two arms, the retriever distilled from a re-ranker that trains
with it (dynamic) and from a frozen one (static), on the same seeds. A condition that changes one
arm only reuses the other arm's runs from `power` (same config, so the same stage folders). Runs
are joint-stage folders (`rqakit.stages.joint`), evaluated for what the study reads: the retriever
on validation and test, validation curves where a condition draws them, no re-ranking pass.

Each finished run is exported at once to `reports/<profile>-study/runs/<run id>.json` (metrics,
per-query test and validation values, curves, per-step history, precision, machine, commit):
small files meant to be committed as they appear, so the report is rebuilt from them alone and
survives the loss of `runs/`. A reader recomputes one by moving its file away and running `rqakit
study --profile P --conditions C --seeds S`: it trains the run unless its stage folder is here, into
the folder hash the file names on a CPU of the same precision.

The queue runs conditions in `CONDITIONS` order, seed by seed with both arms of a seed together,
so that an interrupted study always holds complete pairs; a condition with a `grid` first trains
each grid point on the first seed and keeps the best on validation (never test). Two conditions are
chosen from the others' results once those are complete: `confirm` retrains the lead of the paper's
conditions (the smallest run-level p, if below 0.05) on fresh seeds, one test stated before its runs;
`best-retriever` retrains the arm best on validation at MiniLM's own passage length.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import write_json
from .config import load_config
from .errors import RqaError
from .stage_folder import StageFolder

MEASURE = "nDCG@10"


@dataclass(frozen=True)
class Arm:
    variant: str                      # the joint variant: dynamic | static
    overrides: dict = field(default_factory=dict)
    reuse: str | None = None          # the condition whose runs this arm is (nothing new trained)


@dataclass(frozen=True)
class Condition:
    key: str
    title: str
    question: str
    dynamic: Arm
    static: Arm
    seeds: tuple = (1, 2, 3, 4, 5)
    curves: bool = True               # validation curves of both models every joint.eval_every steps
    grid: tuple = ()                  # candidate overrides, one chosen on validation with the first seed
    grid_arm: str = "dynamic"         # the arm the grid is tried on
    extension: bool = False           # beyond the paper
    best_of: tuple = ()               # one arm only: the setting of these conditions best on validation ...
    overrides: dict = field(default_factory=dict)   # ... retrained with these overrides (`best_setting`)
    confirms: tuple = ()              # both arms of these conditions' lead, on fresh seeds (`lead_to_confirm`)

    def arms(self) -> dict[str, Arm]:
        return {"dynamic": self.dynamic, "static": self.static}

    @property
    def trained_teacher(self) -> bool:
        """Whether the static arm distils the re-ranker a dynamic run ends with (`joint.teacher = joint`)."""
        return self.static.overrides.get("joint.teacher") == "joint"


# Ordered by what each decides per hour of a 2-core CPU: the power question first (it shares its
# first seeds with the report), then the cheap single-arm conditions, the new warm start, the long
# training runs, and a lead among them tested again on fresh seeds; then what could hide an effect:
# the clip the towers share (at the profile's setting), softer targets (short runs, against the
# near one-hot targets of the warm teacher), the teacher the long runs end with (a control of the
# two-epoch lead, which the confirmation left open); the user's question, the dearest, last.
CONDITIONS = (
    Condition("power", "Power at the profile's setting",
              "With 8 seeds per arm, is there a difference of the paper's relative size?",
              Arm("dynamic"), Arm("static"), seeds=tuple(range(1, 9)), curves=False),
    Condition("teacher-noise", "Teacher noise vs teacher learning",
              "A frozen teacher read in train mode (dropout on, no updates) against the dynamic one: "
              "does the dynamic arm differ through learning or through noise?",
              Arm("dynamic", reuse="power"), Arm("static", {"joint.teacher_dropout": True})),
    Condition("ce-optimizer", "The re-ranker's own learning rate and warm-up",
              "With an optimizer that does not make the re-ranker fall below its teacher first, "
              "does dynamic distillation gain?",
              Arm("dynamic"), Arm("static", reuse="power"),
              grid=({"joint.ce_lr": 5e-6, "joint.ce_warmup_ratio": 0.0},
                    {"joint.ce_lr": 5e-6, "joint.ce_warmup_ratio": 0.2},
                    {"joint.ce_lr": None, "joint.ce_warmup_ratio": 0.2})),
    Condition("pointwise-warm", "The paper's warm start: a pointwise warm re-ranker",
              "Both arms on the lists of a pointwise warm re-ranker read through its own sigmoid, as "
              "RocketQA's step 2 and v1's 0.1 / 0.9 thresholds.",
              Arm("dynamic", {"warmup_ce.loss": "pointwise", "augment.calibration": "sigmoid"}),
              Arm("static", {"warmup_ce.loss": "pointwise", "augment.calibration": "sigmoid"})),
    Condition("two-epochs", "Training length: 2 epochs of joint training",
              "With 4 times the training of the profile (2 epochs against 0.5), does the gap move?",
              Arm("dynamic", {"joint.epochs": 2.0}), Arm("static", {"joint.epochs": 2.0})),
    Condition("confirm", "A lead tested again on fresh seeds",
              "The paper's question again where it came closest to an answer: of the conditions above, the one "
              "whose dynamic - static difference has the smallest run-level p, if below 0.05, retrained in both arms "
              "on seeds no condition used, and tested once, with no adjustment over conditions.",
              Arm("dynamic"), Arm("static"), seeds=(11, 12, 13, 14, 15), curves=False,
              confirms=("power", "teacher-noise", "ce-optimizer", "pointwise-warm", "two-epochs")),
    Condition("tower-clip", "Each tower's gradient clipped apart",
              "One gradient norm over both towers, as the official code clips, lets the dynamic arm's re-ranker "
              "(its gradient several times the retriever's) shrink the retriever's step, by a factor that varies "
              "from step to step; the static arm has no re-ranker gradient. With each tower clipped on its own, at "
              "the profile's setting, does a gap open?",
              Arm("dynamic", {"joint.clip_per_tower": True}), Arm("static", reuse="power")),
    Condition("soft-targets", "Softer targets: a teacher temperature",
              "The re-ranker's list softmax at a temperature above 1 (chosen on validation with the "
              "static arm): do softer targets open a gap?",
              Arm("dynamic"), Arm("static"), grid=({"joint.teacher_temperature": 2.0},
                                                   {"joint.teacher_temperature": 4.0}), grid_arm="static",
              extension=True),
    Condition("trained-teacher", "A better teacher that does not move",
              "The static arm distilled from the re-ranker that the dynamic run of its seed ends with after 2 "
              "epochs, frozen from the first step: does a dynamic lead at 2 epochs come from a teacher that learns "
              "along the way, or from the better teacher it becomes? That teacher is also sharper (its target "
              "entropy is in the drift table), so a static arm that gains from it gains from both.",
              Arm("dynamic", reuse="two-epochs"), Arm("static", {"joint.epochs": 2.0, "joint.teacher": "joint"})),
    Condition("best-retriever", "The best retriever the kit makes here",
              "A user's question, not the paper's: the arm of the conditions above that scores best on "
              "validation, retrained with passages read up to 256 tokens (MiniLM's own length; the profile "
              "reads 128), on test, beside the zero-shot model at the same length and small off-the-shelf models.",
              Arm("dynamic"), Arm("static"), seeds=(1, 2, 3), curves=False, extension=True,
              best_of=("teacher-noise", "ce-optimizer", "pointwise-warm", "soft-targets", "two-epochs"),
              overrides={"model.p_max_len": 256}),
)


def condition(key: str) -> Condition:
    for c in CONDITIONS:
        if c.key == key:
            return c
    raise RqaError(f"unknown study condition {key!r}; choose from: {', '.join(c.key for c in CONDITIONS)}")


def point_label(point: dict) -> str:
    return "-".join(f"{k.split('.')[-1]}={v}" for k, v in sorted(point.items()))


def run_id(cond: str, arm: str, seed: int, point: dict | None = None) -> str:
    """`power.dynamic.s4`; a grid point's run: `ce-optimizer.dynamic[ce_lr=5e-06-...].s1`."""
    return f"{cond}.{arm}{f'[{point_label(point)}]' if point else ''}.s{seed}"


def study_dir(profile: str, out: str | Path | None = None) -> Path:
    return Path(out) if out is not None else Path("reports") / f"{profile}-study"


# ----------------------------------------------------------------------------- export
def _history(rows: list[dict]) -> list[dict]:
    keep = ("step", "loss", "sup", "kl", "grad_norm", "grad_norm_de", "grad_norm_ce", "acc_ce", "acc_de", "lr")
    return [{k: (round(float(r[k]), 6) if isinstance(r[k], float) else r[k]) for k in keep if k in r} for r in rows]


def export_run(ws, folder: Path, rid: str, *, cond: str, arm: str, seed: int, overrides: dict,
               baselines: bool = False) -> dict:
    """The small, committable record of one finished joint run (`baselines`: with the test scores
    of the zero-shot and BM25 baselines its workspace read, for a run whose settings differ
    from the profile's)."""
    from .artifacts import read_manifest
    from .evaluation import per_query_split
    from .stages.common import load_run, split_scorer

    manifest = read_manifest(folder) or {}
    record = {"run": rid, "condition": cond, "arm": arm, "seed": seed, "overrides": overrides,
              "stage": folder.parent.name, "folder_hash": folder.name,
              **provenance(manifest), "steps": manifest.get("steps"),
              "lists": manifest.get("lists"), "epochs": manifest.get("epochs")}
    measures = list(ws.cfg.evaluate.measures)
    for split_name, split in (("test", ws.test), ("val", ws.val)):
        run = load_run(folder, f"retriever.{split_name}")
        record[split_name] = split_scorer(ws, split)(run, measures)
        frame = per_query_split(run, split, [MEASURE], None, ws.cfg.evaluate.relevance)
        record[f"{split_name}_per_query"] = {q: round(float(v), 6) for q, v in zip(frame.query_id, frame.value)}
    if baselines:
        record["baselines_test"] = {system: scores[MEASURE] for system, scores in
                                    StageFolder(ws.folder("baselines")).metrics.items()}
    stage = StageFolder(folder)
    record["curves"] = stage.curves
    record["history"] = _history(stage.history or [])
    return record


def provenance(manifest: dict) -> dict:
    """Where and how a stage folder was computed, as a run record keeps it: precision, machine,
    commit, when it finished and its wall time."""
    return {"precision": manifest.get("compute_dtype"), "machine": manifest.get("machine"),
            "commit": manifest.get("git_commit"), "finished_at": manifest.get("finished_at"),
            "wall_time_s": manifest.get("wall_time_s")}


def teacher_record(lists_path: Path, temperatures=(1.0, 2.0, 4.0)) -> dict:
    """The targets a static arm distils from: per training list, the warm re-ranker's softmax at
    each temperature; its entropy (nats; ln m is uniform) and the positive's probability."""
    from .mining import read_lists

    lists = read_lists(lists_path)
    scores = [np.asarray(s, float) for s in lists.ce_scores]
    full = np.stack([s for s in scores if not np.isnan(s).any()])          # (n_lists, m)
    out = {"lists": len(scores), "lists_fully_scored": int(len(full)), "m": int(full.shape[1]),
           "positive_logit": _quantiles(full[:, 0]), "max_negative_logit": _quantiles(full[:, 1:].max(axis=1))}
    for t in temperatures:
        z = full / t
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        entropy = -(p * np.log(np.clip(p, 1e-30, None))).sum(axis=1)
        out[f"T={t:g}"] = {"entropy": _quantiles(entropy), "p_positive": _quantiles(p[:, 0]),
                           "share_p_positive_above_0.9": float((p[:, 0] > 0.9).mean())}
    return out


DRIFT_LISTS = 256   # lists sampled (fixed seed) to measure a re-ranker's drift; quantiles need no more


def teacher_drift(ws, folder: Path, seed: int, n_lists: int = DRIFT_LISTS) -> dict | None:
    """How far a dynamic run's re-ranker moved from the warm one it started as, on a fixed sample of
    the lists it trained on, at its distillation temperature: its list softmax P_joint (the last
    dynamic targets, read in eval mode) against P_warm (the static arm's targets). Per list
    KL(P_warm || P_joint) in nats, the share of lists whose top passage both put first, and
    p(positive) under each. None for a run that saved no re-ranker (static)."""
    from scipy.special import log_softmax

    from .mining.files import training_lists
    from .models.cross_encoder import CrossEncoder
    from .runtime import compute_dtype_name
    from .stages.joint import teacher_scores, unscored, variant_config

    if not (folder / "reranker").is_dir():
        return None
    j = variant_config(ws, "dynamic", None, seed)
    lists = training_lists(ws.folder("augment") / "lists.parquet", use_denoised=j.use_denoised,
                           list_size=j.list_size)
    pick = np.sort(np.random.default_rng(0).choice(len(lists), size=min(n_lists, len(lists)), replace=False))
    sample = dataclasses.replace(lists, query_ids=lists.query_ids[pick], doc_index=lists.doc_index[pick],
                                 ce_scores=lists.ce_scores[pick])
    batch = ws.cfg.evaluate.batch_size
    warm = teacher_scores(sample, ws, CrossEncoder.from_pretrained(ws.folder("warmup_ce") / "model").eval(), batch)
    joint = teacher_scores(unscored(sample), ws, CrossEncoder.from_pretrained(folder / "reranker").eval(), batch)
    log_w, log_j = log_softmax(warm / j.teacher_temperature, axis=1), log_softmax(joint / j.teacher_temperature, axis=1)
    p_w, p_j = np.exp(log_w), np.exp(log_j)
    return {"lists": len(pick), "temperature": j.teacher_temperature, "precision": compute_dtype_name(ws.cfg.runtime.device),
            "kl_warm_joint": _quantiles((p_w * (log_w - log_j)).sum(axis=1)),
            "top1_agreement": float((warm.argmax(axis=1) == joint.argmax(axis=1)).mean()),
            "p_positive_warm": _quantiles(p_w[:, 0]), "p_positive_joint": _quantiles(p_j[:, 0]),
            "entropy_joint": _quantiles(-(p_j * log_j).sum(axis=1))}


def _quantiles(x: np.ndarray) -> dict:
    return {"mean": float(np.mean(x)), **{f"q{int(q * 100):02d}": float(np.quantile(x, q))
                                          for q in (0.05, 0.25, 0.5, 0.75, 0.95)}}


# ----------------------------------------------------------------------------- the queue
def run_config(profile: str, overrides: dict, base: list | dict | None = None):
    from .config import parse_overrides

    return load_config(profile, {**parse_overrides(base), **overrides})


def train_run(profile: str, cond: Condition, arm_name: str, seed: int, point: dict | None, *,
              base_overrides=None, log=print) -> tuple[Path, object, dict]:
    """One run of an arm, trained unless cached: (its joint folder, the Workspace it ran in, the
    overrides that make it). The report's own runs (power at `ablations.seeds`) evaluate as the
    report's chapters do, so they are the same folders; every other run evaluates only what the
    study reads."""
    from .stages import Workspace, joint

    arm = cond.arms()[arm_name]
    overrides = {**arm.overrides, **(point or {})}
    cfg = run_config(profile, overrides, base_overrides)
    ws = Workspace(cfg)
    return joint.run(ws, arm.variant, seed=seed, evaluates=evaluates(cond, seed, cfg), log=log), ws, overrides


def evaluates(cond: Condition, seed: int, cfg) -> dict[str, bool] | None:
    """What a study run evaluates besides its retriever: None for the report's own runs (power at
    `ablations.seeds`: as the report's chapters do, so the same folders), else curves where the
    condition draws them and no re-ranking pass."""
    if cond.key == "power" and seed in cfg.ablations.seeds:
        return None
    return {"curves": cond.curves, "rerank": False, "rerank_bm25": False}


def chosen_point(records: list[dict], cond: Condition) -> dict | None:
    """The grid point whose first-seed run scores best on validation (retriever nDCG@10, never
    test); None until every point has run, or for a condition without a grid."""
    if not cond.grid:
        return None
    scores = []
    for point in cond.grid:
        hit = [r for r in records if r["run"] == run_id(cond.key, cond.grid_arm, cond.seeds[0], point)]
        if not hit:
            return None
        scores.append((hit[0]["val"][MEASURE], point))
    return max(scores, key=lambda pair: pair[0])[1]


def arm_runs(records: list[dict], cond: Condition, arm: str) -> list[dict]:
    """The runs of one arm: its own, or those of the condition it reuses; for a grid condition
    only the runs of the point chosen on validation."""
    spec = cond.arms()[arm]
    mine = [r for r in records if r["condition"] == (spec.reuse or cond.key) and r["arm"] == arm]
    if spec.reuse is None and cond.grid:
        point = chosen_point(records, cond)
        mine = [r for r in mine if point is not None and all(r["overrides"].get(k) == v for k, v in point.items())]
    return mine


def complete(records: list[dict], keys: tuple) -> bool:
    """Whether each condition of `keys` has exported every run it plans."""
    exported = {r["run"] for r in records}
    return all(t[3] in exported for key in keys for t in planned(condition(key), records))


def runs_by_seed(runs: list[dict], precision: str | None) -> dict[int, dict]:
    """{seed: run} of the runs computed in `precision` (runs of another are never mixed in)."""
    return {r["seed"]: r for r in runs if str(r["precision"]) == precision}


def paired_runs(records: list[dict], cond: Condition) -> tuple[str | None, list[str], dict, dict]:
    """The runs a condition's test reads: (precision, the other precisions seen, {seed: dynamic
    run}, {seed: static run}) on the seeds both arms have in the precision with the most such
    seeds; runs of another precision are never mixed in, and a seed waits for its pair."""
    dyn_all, sta_all = arm_runs(records, cond, "dynamic"), arm_runs(records, cond, "static")
    seen = sorted({str(r["precision"]) for r in dyn_all + sta_all})

    pairs = {p: set(runs_by_seed(dyn_all, p)) & set(runs_by_seed(sta_all, p)) for p in seen}
    precision = max(seen, key=lambda p: len(pairs[p])) if seen else None
    if precision is None:
        return None, [], {}, {}
    dyn, sta, shared = runs_by_seed(dyn_all, precision), runs_by_seed(sta_all, precision), sorted(pairs[precision])
    return (precision, [p for p in seen if p != precision], {s: dyn[s] for s in shared}, {s: sta[s] for s in shared})


def best_setting(records: list[dict], cond: Condition, provisional: bool = False) -> dict | None:
    """The arm of `cond.best_of` with the highest mean validation score over its seeds (never test):
    {"condition", "arm", "overrides", "val", "seeds"}; None until each of those conditions has
    exported every run it plans (`provisional`: the leader among the runs exported so far, which
    `rqakit plan` costs before the choice is made; None before any)."""
    if not provisional and not complete(records, cond.best_of):
        return None
    candidates = []
    for key in cond.best_of:
        for arm in ("dynamic", "static"):
            runs = arm_runs(records, condition(key), arm)
            if runs:
                candidates.append({"condition": key, "arm": arm, "overrides": runs[0]["overrides"],
                                   "val": float(np.mean([r["val"][MEASURE] for r in runs])), "seeds": len(runs)})
    return max(candidates, key=lambda c: c["val"]) if candidates else None


def lead_to_confirm(records: list[dict], cond: Condition, provisional: bool = False) -> dict | None:
    """The condition of `cond.confirms` whose dynamic - static difference on test has the smallest
    run-level p (paired t over seeds), when that p is below 0.05: {"condition", "diff", "p", "sd"
    (of its per-seed differences), "overrides": {arm: the overrides its runs trained with}}. None until each of those conditions
    has exported every run it plans (`provisional`: the lead so far), or when none is below 0.05."""
    from .stats import ALPHA, compare_seeds

    if not provisional and not complete(records, cond.confirms):
        return None
    leads = []
    for key in cond.confirms:
        _, _, dyn, sta = paired_runs(records, condition(key))
        if len(dyn) < 2:
            continue
        c = compare_seeds({s: r["test"][MEASURE] for s, r in sta.items()}, {s: r["test"][MEASURE] for s, r in dyn.items()})
        if c["p"] is not None and c["p"] < ALPHA:
            diffs = [dyn[seed]["test"][MEASURE] - sta[seed]["test"][MEASURE] for seed in dyn]
            leads.append({"condition": key, "diff": c["diff"], "p": c["p"], "sd": float(np.std(diffs, ddof=1)),
                          "overrides": {"dynamic": dyn[min(dyn)]["overrides"], "static": sta[min(sta)]["overrides"]}})
    return min(leads, key=lambda lead: lead["p"]) if leads else None


def planned(cond: Condition, records: list[dict], assume: dict | None = None,
            provisional: bool = False) -> list[tuple[str, int, dict | None, str]]:
    """(arm, seed, grid point, run id) of every run the condition needs, in queue order; a grid
    condition lists its selection runs until a point is chosen (or `assume`d, to plan the rest); a
    `best_of` condition nothing until its setting is chosen, then that arm's overrides and its own
    as the point; a `confirms` condition nothing until its lead is known, then both arms of the lead
    with their overrides as the point (`provisional`: either choice as it stands now)."""
    if cond.best_of:
        best = best_setting(records, cond, provisional)
        if best is None:
            return []
        point = {**best["overrides"], **cond.overrides}
        return [(best["arm"], seed, point, run_id(cond.key, best["arm"], seed, point)) for seed in cond.seeds]
    if cond.confirms:
        lead = lead_to_confirm(records, cond, provisional)
        if lead is None:
            return []
        return [(arm, seed, lead["overrides"][arm] or None, run_id(cond.key, arm, seed, lead["overrides"][arm]))
                for seed in cond.seeds for arm in ("dynamic", "static")]
    todo, point = [], chosen_point(records, cond) or assume
    if cond.grid and point is None:
        return [(cond.grid_arm, cond.seeds[0], p, run_id(cond.key, cond.grid_arm, cond.seeds[0], p))
                for p in cond.grid]
    for seed in cond.seeds:
        for name, arm in cond.arms().items():
            if arm.reuse is None:
                todo.append((name, seed, point, run_id(cond.key, name, seed, point)))
    return todo


def run_queue(profile: str, *, conditions=None, seeds=None, out=None, base_overrides=None, log=print) -> list[str]:
    """Train and export every missing run of `conditions` (all by default; only `seeds` if given),
    in order. Returns the run ids exported by this call."""
    from .stages import Workspace

    out = study_dir(profile, out)
    add_measures(profile, out, base_overrides, log)
    done, profile_ws = [], Workspace(run_config(profile, {}, base_overrides))
    for cond in [condition(k) for k in conditions] if conditions else CONDITIONS:
        while True:
            todo = [t for t in planned(cond, read_runs(out)) if not (out / "runs" / f"{t[3]}.json").exists()
                    and (seeds is None or t[1] in seeds)]
            if not todo:
                break
            arm, seed, point, rid = todo[0]
            log(f"[study] {rid}")
            folder, ws, overrides = train_run(profile, cond, arm, seed, point, base_overrides=base_overrides, log=log)
            record = export_run(ws, folder, rid, cond=cond.key, arm=arm, seed=seed, overrides=overrides,
                                baselines=bool(cond.best_of))
            if arm == "dynamic":
                record["drift"] = teacher_drift(ws, folder, seed)
            if ws.cfg.joint.teacher == "joint":
                record["teacher_run"] = teacher_source(ws, cond, seed)
            if stages := own_stages(ws, profile_ws):
                record["own_stages"] = stages
            write_json(out / "runs" / f"{rid}.json", record)
            done.append(rid)
            if cond.key == "power" or (cond.key == "pointwise-warm" and seed == cond.seeds[0]):
                export_teacher(ws, out, "pointwise-warm" if cond.key == "pointwise-warm" else "listwise-warm")
    return done


def add_measures(profile: str, out: Path, base_overrides=None, log=print) -> list[str]:
    """The measures read off stage folders that an exported record lacks (it was exported before the
    measure existed), where those folders are still here: `teacher_drift` of a dynamic run,
    `teacher_source` of a run with a trained teacher, `own_stages` of a run whose overrides rebuild
    first stages. Returns the run ids it added to."""
    from .stages import Workspace

    added, profile_ws = [], Workspace(run_config(profile, {}, base_overrides))
    for record in read_runs(out):
        drift = record["arm"] == "dynamic" and "drift" not in record
        source = record["overrides"].get("joint.teacher") == "joint" and not record.get("teacher_run")
        ws = Workspace(run_config(profile, record["overrides"], base_overrides))
        stages = [] if "own_stages" in record else own_stages(ws, profile_ws)
        if not (drift or source or stages):
            continue
        folder = ws.root / record["stage"] / record["folder_hash"]
        new = {"own_stages": stages} if stages else {}
        if drift and folder.is_dir():
            ws.apply()
            log(f"[study] drift of {record['run']}")
            new["drift"] = teacher_drift(ws, folder, record["seed"])
        if source and (found := teacher_source(ws, condition(record["condition"]), record["seed"])):
            new["teacher_run"] = found
        if new:
            write_json(out / "runs" / f"{record['run']}.json", {**record, **new})
            added.append(record["run"])
    return added


def teacher_source(ws, cond: Condition, seed: int) -> dict | None:
    """The dynamic run a `joint.teacher: joint` run distilled from, read off its stage folder: its
    folder hash, precision, machine, commit, wall time and test scores (the same configuration as the exported
    run it pairs with, so a teacher retrained on another machine shows how far that moved it). None
    for a run with the warm teacher, or while that folder is not here."""
    from .artifacts import read_manifest
    from .stages import joint

    if ws.cfg.joint.teacher != "joint":
        return None
    j = joint.variant_config(ws, "static", None, seed)
    teacher_ws, name, reads = joint.teacher_run(ws, j, evaluates(cond, seed, ws.cfg))
    folder = teacher_ws.folder(name, joint.stage_hash(teacher_ws, name, reads))
    if (manifest := read_manifest(folder)) is None:
        return None
    return {"stage": name, "folder_hash": folder.name, **provenance(manifest),
            "test": StageFolder(folder).metrics["retriever"]}


def own_stages(ws, profile_ws) -> list[dict]:
    """The first stages (`joint.NEEDS`) a run's overrides rebuild apart from the profile's, as the
    run's condition computed them (a longer passage length rebuilds all four): each one's name,
    folder hash and provenance, so the condition's wall time counts them once, however many of its
    runs share them. Empty for a run on the profile's first stages, or while their folders are gone."""
    from .artifacts import read_manifest
    from .stages import joint

    out = []
    for stage in joint.NEEDS:
        folder = ws.folder(stage)
        if folder != profile_ws.folder(stage) and (manifest := read_manifest(folder)) is not None:
            out.append({"stage": stage, "folder_hash": folder.name, **provenance(manifest)})
    return out


def export_teacher(ws, out: Path, name: str) -> None:
    """The warm re-ranker's static targets (`teacher_record`) and whether it leads on validation
    (`stages.teacher`), once per teacher."""
    from .stages import teacher

    path = out / "teachers" / f"{name}.json"
    record = json.loads(path.read_text()) if path.exists() else {
        "teacher": name, "augment": ws.folder("augment").name, **teacher_record(ws.folder("augment") / "lists.parquet")}
    if "leads" not in record and (checked := teacher.read(ws)) is not None:
        record["leads"] = {k: checked[k] for k in ("measure", "split", "queries", "rows", "leads")}
        write_json(path, record)
    elif not path.exists():
        write_json(path, record)


def read_runs(out: str | Path) -> list[dict]:
    """Every exported run record of a study folder."""
    folder = Path(out) / "runs"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
