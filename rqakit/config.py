"""One dataclass tree for a run: a profile YAML (`rqakit/profiles/<name>.yaml`) plus overrides.

Every field carries a one-line help text (`field_help`). Where the paper and the official code
disagree, the official code's choice is the default and the paper's reading is a switch
(../shared/reference/rocketqav2.md §6).

    cfg = load_config("toy", {"joint.list_size": 4})
    cfg.joint.kl_direction        # "code"
    config_hash(cfg, "joint")     # stable hash of what a stage depends on
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from .errors import RqaError

PROFILES_DIR = Path(__file__).parent / "profiles"


def _f(default, help: str):
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


SPLIT_NAMES = ("train", "dev", "test")   # the splits of a collection named by data.files


@dataclass
class QrelsFiles:
    train: str | None = _f(None, "qrels of the train split (TREC or BEIR TSV, data/README.md)")
    dev: str | None = _f(None, "qrels of the dev split")
    test: str | None = _f(None, "qrels of the test split")


@dataclass
class FilesConfig:
    beir: str | None = _f(None, "your own collection as a BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv "
                                "(a relative path: from the profile's folder); data.train and data.eval name its splits")
    docs: str | None = _f(None, "... or as separate files: the docs (TSV or JSONL, data/README.md)")
    queries: str | None = _f(None, "the queries of every split (TSV or JSONL); a split holds those its qrels judge")
    qrels: QrelsFiles = field(default_factory=QrelsFiles)


@dataclass
class DataConfig:
    train: str = _f("rqakit/toy/train", "ir_datasets ID of the training queries (and corpus)")
    eval: str | None = _f("rqakit/toy/test", "ir_datasets ID of the evaluation queries; null: split train by seed")
    eval_fraction: float = _f(0.2, "share of train queries used for evaluation when eval is null")
    val_fraction: float = _f(0.1, "share of train queries held out as a validation slice (choices, curves)")
    split_seed: int = _f(0, "seed of the deterministic query splits")
    use_titles: bool = _f(True, "passage text is title + text (RocketQA's MS MARCO corpus has titles)")
    max_train_queries: int | None = _f(None, "cap on training queries (null: all)")
    answer_free_negatives: bool = _f(True, "where the training split has answers (NQ), a passage containing one "
                                           "(DPR has_answer) is never a negative, as DPR's and RocketQA's NQ data")
    files: FilesConfig = field(default_factory=FilesConfig)


@dataclass
class ModelConfig:
    backbone: str = _f("tiny", "backbone of all three towers: tiny | minilm | bert-base | a folder | a Hugging Face hub ID")
    pooling: str = _f("cls", "dual-encoder pooling: cls (raw [CLS], official code) | mean")
    ce_pooling: str = _f("cls", "cross-encoder head input: cls (official code) | mean (faster for MiniLM)")
    shared_towers: bool = _f(False, "one tower for queries and passages (RocketQAv2: separate)")
    normalize: bool = _f(False, "L2-normalise dual-encoder embeddings (paper: no; a non-paper option)")
    temperature: float = _f(1.0, "divide inner products by this (paper: 1; with normalize, e.g. 0.05)")
    q_max_len: int = _f(32, "query max length in tokens (official code: 32)")
    p_max_len: int = _f(128, "passage max length in tokens, title + text (official code: 128)")
    ce_max_len: int = _f(160, "cross-encoder max length (official code: 30 + 125 + 3 = 158)")
    ce_query_max_len: int = _f(0, "cross-encoder: 0 truncates query + passage together, longest first, to ce_max_len; "
                                  "N caps the query at N tokens and the passage at ce_max_len - N - 3 (official: 30, 125)")


@dataclass
class WarmupDEConfig:
    epochs: float = _f(1.0, "epochs over the training (query, positive) pairs")
    lr: float = _f(3e-5, "learning rate (RocketQA step 1: 3e-5)")
    batch_queries: int = _f(16, "queries per step; in-batch negatives come from the other queries")
    warmup_ratio: float = _f(0.1, "linear warm-up share of steps (RocketQA step 1: 0.1)")
    weight_decay: float = _f(0.0, "AdamW weight decay (RocketQA step 1: 0)")
    bm25_depth: int = _f(30, "BM25 hard negative drawn from this depth, excluding labelled positives")
    seed: int = _f(1, "seed of the hard negatives, the batch order and the initial RNG state")
    checkpoint_every: int = _f(50, "write a resumable checkpoint every N optimizer steps")


@dataclass
class WarmupCEConfig:
    epochs: float = _f(1.0, "epochs over training queries")
    lr: float = _f(5e-5, "learning rate")
    batch_queries: int = _f(4, "queries (lists) per step")
    warmup_ratio: float = _f(0.1, "linear warm-up share of steps (RocketQA step 2: 0)")
    schedule: str = _f("linear", "after warm-up: linear decay to 0 | constant (RocketQA step 2: no warm-up, constant)")
    weight_decay: float = _f(0.01, "AdamW weight decay (RocketQA step 2: 0.01)")
    loss: str = _f("listwise", "listwise: softmax cross-entropy over each list | pointwise: per-pair BCE on the logit "
                               "(RocketQA step 2 was a pointwise two-class classifier)")
    list_size: int = _f(8, "1 positive + list_size-1 negatives per list (RocketQA step 2: 1 + 4 per positive)")
    negatives_from: str = _f("bm25+de", "where negatives are sampled: bm25 | de | bm25+de")
    depth: int = _f(30, "negatives are sampled from this retrieval depth")
    seed: int = _f(1, "seed of the negatives, the batch order and the initial RNG state")
    lead_epochs: int = _f(0, "up to this many more epochs of warm-up, one at a time, while the re-ranker does not "
                             "lead BM25 and the warm retriever on validation (rqakit.stages.teacher); 0: off")
    checkpoint_every: int = _f(50, "write a resumable checkpoint every N optimizer steps")


@dataclass
class AugmentConfig:
    retrieve_depth: int = _f(100, "top-n retrieved by the warm dual encoder for every training query")
    score_depth: int = _f(50, "how many of the top-n the warm cross-encoder scores")
    list_size: int = _f(8, "m: 1 positive + m-1 negatives per list")
    neg_threshold: float = _f(0.1, "denoised negatives: calibrated CE probability below this (v1: 0.1)")
    pos_threshold: float = _f(0.9, "pseudo positives: calibrated CE probability above this (v1: 0.9)")
    calibration: str = _f("platt", "logit -> probability: platt (fit on labelled pairs) | sigmoid (the CE's own "
                                   "two-class probability; a pointwise CE) | rank (thresholds by CE rank)")
    calibration_prior: float | None = _f(0.2, "platt: fit weighted to this positive rate, whatever the scored pairs' "
                                              "own rate (0.2: RocketQA step 2's 1:4 training data); null: the pairs' rate")
    rank_keep_from: int = _f(10, "rank rule: candidates ranked below this by the CE are negatives")
    max_pseudo_positives: int = _f(1, "denoised lists per query built around pseudo positives (at most)")
    seed: int = _f(0, "seed of negative sampling")


@dataclass
class JointConfig:
    mode: str = _f("dynamic", "dynamic (both models train) | static (CE frozen teacher, Table 4)")
    ce_loss: str = _f("listwise", "re-ranker loss: listwise (Eq. 5) | pointwise (Table 4 ablation)")
    use_denoised: bool = _f(True, "train on undenoised + denoised lists; false: undenoised only (Table 4)")
    list_size: int = _f(8, "m, instances per query (paper: 128 MS MARCO, 32 NQ; ablations 8)")
    kl_direction: str = _f("code", "code: KL(P_ce||P_de) (official) | paper: KL(P_de||P_ce) (Eq. 4)")
    kl_grad_to_ce: bool = _f(False, "KL gradient reaches the re-ranker (official code: no)")
    kl_reduction: str = _f("mean", "mean over B*m elements (official code) | batchmean (per query)")
    in_batch: bool = _f(False, "add in-batch negatives to the retriever loss (paper: no gain, off)")
    lr: float = _f(1e-5, "learning rate, constant (official code: warmup 0, no decay)")
    weight_decay: float = _f(0.01, "AdamW weight decay, not on LayerNorm/bias")
    clip: float = _f(1.0, "global gradient-norm clip over all parameters")
    batch_queries: int = _f(96, "queries per optimizer step (paper: 96)")
    micro_batch_queries: int = _f(4, "queries per forward pass; batch_queries/micro = accumulation")
    epochs: float = _f(1.0, "epochs over the lists (paper: up to 3; code: MARCO 2, NQ 3)")
    seed: int = _f(1, "random seed (official code: 1)")
    ce_lr: float | None = _f(None, "the re-ranker's own learning rate in joint training (null: joint.lr, as the "
                                   "official code)")
    ce_warmup_ratio: float = _f(0.0, "linear warm-up share of steps for the re-ranker's learning rate (official: 0)")
    teacher_dropout: bool = _f(False, "static only: the frozen teacher scores every step in train mode (dropout on, "
                                      "no updates), so the targets are as noisy as a dynamic run's without learning")
    teacher: str = _f("warm", "static only: the frozen teacher: warm (the warm re-ranker, Table 4) | joint (the "
                              "re-ranker of the dynamic run with these settings and seed, after its last step)")
    clip_per_tower: bool = _f(False, "clip each tower's gradient norm to joint.clip apart (official: one global norm "
                                     "over both towers, so the re-ranker's larger gradient shrinks the retriever's)")
    teacher_temperature: float = _f(1.0, "the re-ranker's logits are divided by this before the KL's list softmax "
                                         "(paper: 1; above 1 softens the targets, an extension)")
    eval_every: int = _f(0, "evaluate both models on the validation slice every N steps (0: off)")
    checkpoint_every: int = _f(50, "write a resumable checkpoint every N optimizer steps")


@dataclass
class EvalConfig:
    retrieve_depth: int = _f(100, "retrieval depth for runs and R@k")
    rerank_depth: int = _f(30, "candidates re-ranked by the cross-encoder (paper: 50)")
    measures: list = _f(["nDCG@10", "RR@10", "R@100"], "ir_measures names reported in every table")
    relevance: str = _f("auto", "auto: by answers (DPR has_answer) where the split has them, else by qrels | "
                                "qrels | answers")
    batch_size: int = _f(64, "encoding batch size")


@dataclass
class AblationConfig:
    seeds: list = _f([1, 2, 3], "seeds of dynamic and static distillation")
    variant_seeds: list = _f([1], "seeds of the other Table 4 variants")
    list_sizes: list = _f([4, 8], "list sizes m of the Figure 4 analogue")
    list_size: int | None = _f(None, "m of the Table 4 runs (paper: 8 instances per query); null: joint.list_size")
    no_denoise_budget: str = _f("steps", "w/o denoised lists trains as many optimizer steps as its reference run (steps) "
                                         "| as many epochs over its fewer lists (epochs: about half the steps)")


@dataclass
class StMnrlConfig:
    """The practitioner's peer: sentence-transformers MultipleNegativesRankingLoss fine-tune."""

    epochs: float = _f(1.0, "epochs over the (query, positive, BM25 negative) triples")
    batch_size: int = _f(16, "triples per step; in-batch negatives")
    lr: float = _f(2e-5, "learning rate (linear warm-up then decay)")
    warmup_ratio: float = _f(0.1, "warm-up share of steps")
    weight_decay: float = _f(0.01, "AdamW weight decay")
    max_length: int = _f(256, "max tokens of queries and passages")
    scale: float = _f(20.0, "MNRL scale on cosine similarities (1 / temperature)")
    bf16: bool = _f(True, "bf16 autocast of the towers where the CPU/GPU supports it")
    seed: int = _f(1, "seed of the batch order and the initial RNG state (the triples follow warmup_de.seed)")
    checkpoint_every: int = _f(50, "write a resumable checkpoint every N optimizer steps")


@dataclass
class RuntimeConfig:
    device: str = _f("auto", "auto | cpu | cuda")
    threads: int = _f(0, "torch CPU threads (0: torch default)")
    dropout_masks: str = _f("kit", "kit | torch: CPU training dropout masks from numpy's SFC64 (faster on "
                            "AMD CPUs; other noise, same law) or torch's own (its numbers bit for bit)")
    workdir: str = _f("runs", "where stage artifacts are cached: <workdir>/<profile>/<stage>")
    precision: str = _f("auto", "auto | fp32: bf16 autocast where the CPU (AVX512-BF16, AMX) or GPU has it and "
                        "fp16 on older GPUs, or fp32 everywhere; stage folders are kept apart by the dtype")
    kernels: str = _f("native", "native | portable: CPU kernels that do not depend on the instruction set, set in "
                      "the notebook kernels rqakit reproduce starts, so fp32 results are the same bits on every "
                      "x86-64 CPU (a process started without them computes natively, in folders of its own)")


@dataclass
class RunConfig:
    profile: str = _f("toy", "profile name")
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    warmup_de: WarmupDEConfig = field(default_factory=WarmupDEConfig)
    warmup_ce: WarmupCEConfig = field(default_factory=WarmupCEConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    joint: JointConfig = field(default_factory=JointConfig)
    evaluate: EvalConfig = field(default_factory=EvalConfig)
    ablations: AblationConfig = field(default_factory=AblationConfig)
    st_mnrl: StMnrlConfig = field(default_factory=StMnrlConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    notes: dict = _f({}, "free-form profile notes (GPUs assumed, estimated run time)")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def _convert(value: Any, hint: Any, key: str) -> Any:
    """A command-line string becomes the field's type (YAML reads `2e-5` as a string: not here)."""
    if isinstance(value, str) and hint is not str:
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise RqaError(f"cannot read override {key}={value!r}: {exc.problem}") from None
    if value is None:
        return None
    if hint in (float, int) and not isinstance(value, bool):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise RqaError(f"{key} must be a number, got {value!r}") from None
        if hint is int:
            if not number.is_integer():
                raise RqaError(f"{key} must be a whole number, got {value!r}")
            return int(number)
        return number
    if hint is bool and not isinstance(value, bool):
        raise RqaError(f"{key} must be true or false, got {value!r}")
    return value


def parse_overrides(overrides: dict[str, Any] | list[str] | None) -> dict[str, Any]:
    """`["key=value", ...]` (the CLI's --set) or a dict -> {key: value}; values stay as given and
    take the field's type in `apply_overrides`."""
    if not overrides:
        return {}
    if isinstance(overrides, dict):
        return dict(overrides)
    pairs = {}
    for item in overrides:
        if "=" not in item:
            raise RqaError(f"override {item!r} is not key=value (e.g. joint.lr=2e-5)")
        key, value = item.split("=", 1)
        pairs[key.strip()] = value
    return pairs


def apply_overrides(cfg: RunConfig, overrides: dict[str, Any] | list[str] | None) -> RunConfig:
    """Set `section.field` keys (a dict, or `key=value` strings from the command line)."""
    for key, value in parse_overrides(overrides).items():
        target, parts = cfg, key.split(".")
        for part in parts[:-1]:
            if not dataclasses.is_dataclass(target) or not hasattr(target, part):
                raise RqaError(f"unknown config key {key!r}; see `rqakit config --help-fields`")
            target = getattr(target, part)
        name = parts[-1]
        if not dataclasses.is_dataclass(target) or name not in {f.name for f in dataclasses.fields(target)}:
            raise RqaError(f"unknown config key {key!r}; see `rqakit config --help-fields`")
        if dataclasses.is_dataclass(getattr(target, name)):
            if not isinstance(value, dict):
                raise RqaError(f"config key {key!r} is a section: give a mapping or set its fields")
            apply_overrides(getattr(target, name), {k: v for k, v in value.items()})
            continue
        hint = get_type_hints(type(target)).get(name)
        setattr(target, name, _convert(value, hint, key))
    return cfg


def load_config(profile: str = "toy", overrides: dict | list | None = None) -> RunConfig:
    """The profile's YAML over the dataclass defaults, then the overrides."""
    path = Path(profile)
    if not path.suffix:
        path = PROFILES_DIR / f"{profile}.yaml"
    if not path.exists():
        raise RqaError(f"unknown profile {profile!r}; choose one of: {', '.join(profile_names())}")
    raw = read_profile(path)
    cfg = RunConfig(profile=path.stem)
    apply_overrides(cfg, _flatten(raw))
    _absolute_files(cfg.data.files, path.resolve().parent)   # a profile's files: from its folder
    apply_overrides(cfg, overrides)
    _absolute_files(cfg.data.files, Path.cwd())               # --set ones: from the working folder
    resolve_collection(cfg.data)
    validate(cfg)
    return cfg


# --------------------------------------------------------------------- your own collection (data.files)
# dataset id -> {"docs", "queries", "qrels": {split: path}, "split", "where"}: every split a loaded config
# resolved to, registered in ir_datasets by the data layer when the ID is first opened.
LOCAL_COLLECTIONS: dict[str, dict] = {}
_LOCAL_ID = re.compile(r"local/[0-9a-f]{16}/(train|dev|test)")


def _absolute_files(files: FilesConfig, base: Path) -> None:
    """Relative paths of data.files made absolute against `base`."""
    for key in ("beir", "docs", "queries"):
        if getattr(files, key) is not None:
            setattr(files, key, str((base / Path(str(getattr(files, key))).expanduser()).resolve()))
    for split in SPLIT_NAMES:
        if getattr(files.qrels, split) is not None:
            setattr(files.qrels, split, str((base / Path(str(getattr(files.qrels, split))).expanduser()).resolve()))


def collection_files(files: FilesConfig) -> dict | None:
    """{"docs", "queries", "qrels": {split: path}, "where"} of data.files (None when unset): a BEIR
    folder's corpus.jsonl, queries.jsonl and the qrels/<split>.tsv it holds, or the separate files."""
    qrels = {s: getattr(files.qrels, s) for s in SPLIT_NAMES if getattr(files.qrels, s)}
    if files.beir:
        if files.docs or files.queries or qrels:
            raise RqaError("data.files names a BEIR folder and separate files; keep one: beir, or docs + queries + qrels")
        folder = Path(files.beir)
        if not folder.is_dir():
            raise RqaError(f"data.files.beir: {folder} is not a folder; give a BEIR folder (corpus.jsonl, queries.jsonl, "
                           "qrels/<split>.tsv)")
        for name in ("corpus.jsonl", "queries.jsonl"):
            if not (folder / name).is_file():
                raise RqaError(f"data.files.beir: {folder / name} does not exist; a BEIR folder holds corpus.jsonl, "
                               "queries.jsonl and qrels/<split>.tsv")
        qrels = {s: str(folder / "qrels" / f"{s}.tsv") for s in SPLIT_NAMES if (folder / "qrels" / f"{s}.tsv").is_file()}
        return {"docs": str(folder / "corpus.jsonl"), "queries": str(folder / "queries.jsonl"), "qrels": qrels,
                "where": f"{folder / 'qrels'}/<split>.tsv"}
    if not (files.docs or files.queries or qrels):
        return None
    missing = [f"data.files.{k}" for k in ("docs", "queries") if not getattr(files, k)]
    if missing or not qrels:
        raise RqaError(f"data.files names no {' and no '.join(missing or ['qrels'])}; separate files need docs, queries "
                       "and the qrels of at least the train split (data.files.qrels.train)")
    for key in ("docs", "queries"):
        if not Path(getattr(files, key)).is_file():
            raise RqaError(f"data.files.{key}: {getattr(files, key)} does not exist; give the path of a {key} file")
    return {"docs": files.docs, "queries": files.queries, "qrels": qrels, "where": "data.files.qrels.<split>"}


@functools.lru_cache(maxsize=64)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def content_digest(*paths: str) -> str:
    """16 hex digits over the bytes of the files, in order (their names and places do not count)."""
    digest = hashlib.sha256()
    for path in paths:
        stat = Path(path).stat()
        digest.update(_file_digest(str(path), stat.st_size, stat.st_mtime_ns).encode())
    return digest.hexdigest()[:16]


def resolve_collection(d: DataConfig) -> None:
    """With data.files set, data.train and data.eval name splits of that collection (train, dev,
    test); each becomes the ID `local/<digest>/<split>`, the digest over the content of the docs,
    the queries and that split's qrels: an edited file reruns what reads it, a moved one nothing.
    The data layer registers the ID when it is first opened (`LOCAL_COLLECTIONS`)."""
    files = collection_files(d.files)
    if files is None:
        return
    for key in ("train", "eval"):
        value = getattr(d, key)
        if value is None and key == "eval":
            continue
        known = _LOCAL_ID.fullmatch(str(value))
        split = known.group(1) if known else value
        if split not in SPLIT_NAMES:
            raise RqaError(f"data.{key} = {value!r}: with data.files, name a split of the collection "
                           f"({', '.join(SPLIT_NAMES)})" + ("" if key == "train" else " or null for a seeded split of train"))
        if split not in files["qrels"]:
            fix = "" if key == "train" else ", or set data.eval: null to hold out data.eval_fraction of train"
            raise RqaError(f"data.{key} = {split!r} but the collection has no {split} qrels "
                           f"({files['where'].replace('<split>', split)}); add them{fix}")
        if key == "eval" and split == d.train.rsplit("/", 1)[-1]:
            raise RqaError(f"data.eval = {split!r} is the training split; name another split, or null to hold out "
                           "data.eval_fraction of train")
        dataset_id = f"local/{content_digest(files['docs'], files['queries'], files['qrels'][split])}/{split}"
        LOCAL_COLLECTIONS[dataset_id] = {**files, "split": split}
        setattr(d, key, dataset_id)


def read_profile(path: Path) -> dict:
    """A profile's YAML as a mapping; RqaError naming the file and the line when it does not parse."""
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(exc, "problem", None) or type(exc).__name__
        raise RqaError(f"profile {path} is not valid YAML at{where or ' an unknown place'}: {what}; "
                       "fix that line (nested keys are indented under their section)") from None
    except OSError as exc:
        raise RqaError(f"cannot read profile {path}: {exc.strerror}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise RqaError(f"profile {path} must be a mapping of sections (data:, model:, ...), "
                       f"not a {type(raw).__name__}")
    return raw


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and k != "notes":
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


# The settings every layer checks the same way: config.validate before any stage runs, and the
# library functions (losses, mining) for callers that use them without a config.
CHOICES = {
    "joint.mode": ("dynamic", "static"),
    "joint.ce_loss": ("listwise", "pointwise"),
    "joint.kl_direction": ("code", "paper"),
    "joint.kl_reduction": ("mean", "batchmean"),
    "joint.teacher": ("warm", "joint"),
    "model.pooling": ("cls", "mean"),
    "model.ce_pooling": ("cls", "mean"),
    "augment.calibration": ("platt", "sigmoid", "rank"),
    "warmup_ce.negatives_from": ("bm25", "de", "bm25+de"),
    "warmup_ce.loss": ("listwise", "pointwise"),
    "warmup_ce.schedule": ("linear", "constant"),
    "evaluate.relevance": ("auto", "qrels", "answers"),
    "ablations.no_denoise_budget": ("steps", "epochs"),
    "runtime.dropout_masks": ("kit", "torch"),
    "runtime.precision": ("auto", "fp32"),
    "runtime.kernels": ("native", "portable"),
}


def check_choice(key: str, value) -> None:
    """`value` is one of `CHOICES[key]`, else a one-line RqaError naming the key."""
    if value not in CHOICES[key]:
        raise RqaError(f"{key} = {value!r}; choose one of: {', '.join(CHOICES[key])}")


def check_thresholds(neg_threshold: float, pos_threshold: float, prefix: str = "augment.") -> None:
    """Both are probabilities and the negative one is the lower."""
    for name, value in (("neg_threshold", neg_threshold), ("pos_threshold", pos_threshold)):
        if not 0.0 <= value <= 1.0:
            raise RqaError(f"{prefix}{name} = {value} is outside [0, 1]: thresholds are probabilities")
    if neg_threshold >= pos_threshold:
        raise RqaError(f"{prefix}neg_threshold ({neg_threshold}) must be below {prefix}pos_threshold ({pos_threshold})")


def check_list_size(key: str, m: int) -> None:
    """A list holds 1 positive and at least 1 negative."""
    if m < 2:
        raise RqaError(f"{key} = {m}: a list needs 1 positive and at least 1 negative")


def validate(cfg: RunConfig) -> None:
    """Every inconsistency of a config, found before any stage runs (one-line RqaErrors)."""
    a, j = cfg.augment, cfg.joint
    check_thresholds(a.neg_threshold, a.pos_threshold)
    for key in CHOICES:
        section, name = key.split(".")
        check_choice(key, getattr(getattr(cfg, section), name))
    for key, m in (("joint.list_size", j.list_size), ("augment.list_size", a.list_size),
                   ("warmup_ce.list_size", cfg.warmup_ce.list_size)):
        check_list_size(key, m)
    trained = [("joint.list_size", j.list_size), ("ablations.list_size", cfg.ablations.list_size)]
    trained += [("ablations.list_sizes", m) for m in cfg.ablations.list_sizes]
    for key, m in trained:
        if m is None:
            continue
        check_list_size(key, m)
        if m > a.list_size:
            raise RqaError(f"{key} = {m} is larger than the lists augment builds (augment.list_size = {a.list_size}); "
                           f"raise augment.list_size to at least {m}")
    if a.score_depth > a.retrieve_depth:
        raise RqaError(f"augment.score_depth ({a.score_depth}) is deeper than augment.retrieve_depth "
                       f"({a.retrieve_depth}); the cross-encoder can only score what was retrieved")
    if cfg.warmup_ce.depth < cfg.warmup_ce.list_size - 1:
        raise RqaError(f"warmup_ce.depth ({cfg.warmup_ce.depth}) cannot supply the {cfg.warmup_ce.list_size - 1} "
                       "negatives of a warmup_ce list; raise warmup_ce.depth or lower warmup_ce.list_size")
    prior = a.calibration_prior
    if prior is not None and not 0.0 < prior < 1.0:
        raise RqaError(f"augment.calibration_prior = {prior} must be between 0 and 1 (exclusive), or null")
    q_len, ce_len = cfg.model.ce_query_max_len, cfg.model.ce_max_len
    if q_len < 0 or (q_len and ce_len - q_len - 3 < 1):
        raise RqaError(f"model.ce_query_max_len = {q_len} leaves no room for the passage in model.ce_max_len = {ce_len}")
    if j.teacher_temperature <= 0:
        raise RqaError(f"joint.teacher_temperature = {j.teacher_temperature} must be positive")
    if j.ce_lr is not None and j.ce_lr <= 0:
        raise RqaError(f"joint.ce_lr = {j.ce_lr} must be positive, or null for joint.lr")
    if not 0.0 <= j.ce_warmup_ratio < 1.0:
        raise RqaError(f"joint.ce_warmup_ratio = {j.ce_warmup_ratio} must be in [0, 1)")
    if j.batch_queries % j.micro_batch_queries:
        raise RqaError(f"joint.batch_queries ({j.batch_queries}) must be a multiple of "
                       f"joint.micro_batch_queries ({j.micro_batch_queries})")
    for key in ("data.val_fraction", "data.eval_fraction"):
        section, name = key.split(".")
        value = getattr(cfg.data, name)
        if not 0.0 < value < 1.0:
            raise RqaError(f"{key} = {value} must be between 0 and 1 (exclusive)")


def plain(cfg):
    """The config (or section) itself, whether given plainly or through a `RecordingConfig`."""
    return cfg.unwrapped() if isinstance(cfg, RecordingConfig) else cfg


class RecordingConfig:
    """A read-only view of a RunConfig (or one section) that notes every "section.field" read.

        view = RecordingConfig(cfg); view.joint.lr; view.reads   # {"joint.lr"}

    `plain(view.joint)` hands out the section itself and counts all its fields as read. Used by
    the test that proves each stage's hash covers what the stage reads.
    """

    def __init__(self, target, prefix: str = "", reads: set | None = None):
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_prefix", prefix)
        object.__setattr__(self, "reads", set() if reads is None else reads)

    def __getattr__(self, name: str):
        value = getattr(self._target, name)
        key = f"{self._prefix}{name}"
        if dataclasses.is_dataclass(value):
            return RecordingConfig(value, key + ".", self.reads)
        self.reads.add(key)
        return value

    def __setattr__(self, name, value):
        raise AttributeError("a RecordingConfig is read-only")

    def unwrapped(self):
        if self._prefix:
            self.reads.update(f"{self._prefix}{f.name}" for f in dataclasses.fields(self._target))
        return self._target


def section_dict(cfg: RunConfig, *sections: str) -> dict:
    return {s: dataclasses.asdict(getattr(cfg, s)) if dataclasses.is_dataclass(getattr(cfg, s)) else getattr(cfg, s)
            for s in sections}


def config_hash(cfg: RunConfig | dict, *sections: str, extra: dict | None = None) -> str:
    """A 12-hex hash of the named sections (all when none) and any extra inputs."""
    body = cfg if isinstance(cfg, dict) else (section_dict(cfg, *sections) if sections else cfg.to_dict())
    if extra:
        body = {"config": body, "extra": extra}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:12]


# Fields that change how fast a stage runs, never what it writes (runtime.dropout_masks: another
# random stream of the same law), and data.files, whose content enters through the IDs it resolves
# data.train and data.eval to. Stage and report hashes leave them out.
NEUTRAL = ("evaluate.batch_size", "warmup_de.checkpoint_every", "warmup_ce.checkpoint_every",
           "joint.checkpoint_every", "st_mnrl.checkpoint_every", "runtime", "notes", "profile", "data.files")


# Fields added after stage folders were committed: at these values they stay out of every stage
# and report hash, so a folder built before the field existed keeps its name.
HASHED_WHEN_SET = {"joint.ce_lr": None, "joint.ce_warmup_ratio": 0.0, "joint.teacher_dropout": False,
                   "joint.teacher_temperature": 1.0, "warmup_ce.lead_epochs": 0, "joint.teacher": "warm",
                   "joint.clip_per_tower": False}


def at_default(key: str, value) -> bool:
    """`key` is a `HASHED_WHEN_SET` field left at its value there (so it enters no hash)."""
    return key in HASHED_WHEN_SET and value == HASHED_WHEN_SET[key] and type(value) is type(HASHED_WHEN_SET[key])


def expand(cfg: RunConfig, keys) -> set[str]:
    """"section" or "section.field" patterns -> the set of "section.field" names they cover."""
    out = set()
    for key in keys:
        section, _, name = key.partition(".")
        value = getattr(cfg, section)
        if name or not dataclasses.is_dataclass(value):
            out.add(key)
        else:
            out.update(f"{section}.{f.name}" for f in dataclasses.fields(value))
    return out


def report_hash(cfg: RunConfig) -> str:
    """The hash a report and its chapters are stamped with: the whole config less the `NEUTRAL`
    fields, so a new runtime switch, another thread count or checkpoint interval leaves a finished
    report current, as it leaves the stage folders."""
    body = cfg.to_dict()
    for key in expand(cfg, NEUTRAL):
        section, _, name = key.partition(".")
        (body[section] if name else body).pop(name or section, None)
    for key in HASHED_WHEN_SET:
        section, _, name = key.partition(".")
        if at_default(key, body[section][name]):
            body[section].pop(name)
    return config_hash(body)


def field_help(cfg_cls=RunConfig, prefix: str = "") -> dict[str, str]:
    """`section.field` -> help text, for `rqakit config --help-fields` and the docs."""
    out = {}
    for f in dataclasses.fields(cfg_cls):
        hint = get_type_hints(cfg_cls)[f.name]
        if dataclasses.is_dataclass(hint):
            out.update(field_help(hint, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = f.metadata.get("help", "")
    return out


def config_from_dict(d: dict) -> RunConfig:
    """A RunConfig from its `to_dict()` form (a stage folder's config.json), validated."""
    if not isinstance(d, dict):
        raise RqaError(f"a config must be a mapping of sections, not a {type(d).__name__}")
    body = {k: v for k, v in d.items() if k != "profile"}
    cfg = RunConfig(profile=str(d.get("profile", "custom")))
    apply_overrides(cfg, _flatten(body))
    resolve_collection(cfg.data)
    validate(cfg)
    return cfg
