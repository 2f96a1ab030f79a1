"""Explore a completed run folder query by query: two systems' top-k side by side, and per query.

    rf = RunFolder("runs/toy")                       # <workdir>/<profile> of `rqakit reproduce` or `rqakit stage`
    rf.systems()                                     # {"baselines/bm25": path, "joint-dynamic-m4-s1/retriever": ...}
    a, b = default_pair(rf)                          # static vs dynamic retriever when both ran
    per_query = rf.compare(a, b)                     # one row per test query: nDCG@10 of A and B (ir_measures)
    rf.side_by_side(qid, a, b, k=10)                 # ranks, labels, CE logits, dropped during augmentation
    explorer_widget(rf, a, b)                        # the same, interactive (ipywidgets), in JupyterLab

A system is one test run a stage saved (`<stage>/<hash>/runs/<name>.test.trec`), named
`<stage>/<name>`; each stage is read from its `latest` result (else its newest complete one).
CE logits come from a re-ranker's run over the same query (the warm re-ranker's by default); a
passage outside its re-ranked top N has none. "dropped" counts the training queries for which
`augment` dropped the passage as a likely false negative (augmentation touches training queries
only, so for a test query this is a fact about the passage, not about the pair).
"""
from __future__ import annotations

import json
from collections import Counter
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from .artifacts import completed, read_manifest
from .config import RunConfig, config_from_dict
from .errors import RqaError
from .evaluation import passage_texts, per_query_split
from .runs import Run, ranked, read_trec_run
from .stage_folder import StageFolder

TEST_SUFFIX = ".test"
NOT_RERANKED = "not re-ranked"   # a passage below the re-ranker's top N has no CE logit


def _stage_result(stage_dir: Path) -> Path | None:
    """The stage's `latest` result when complete, else its newest complete one, else None."""
    latest = stage_dir / "latest"
    if latest.exists() and read_manifest(latest.resolve()):
        return latest.resolve()
    done = completed(stage_dir)
    return done[-1] if done else None


def _is_reranker(system: str) -> bool:
    stage, name = system.split("/", 1)
    return stage == "warmup_ce" or name == "reranker"


class RunFolder:
    """The stage results of one profile's run folder, and the test split and corpus they ran on."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise RqaError(f"no run folder at {self.root.resolve()}; give the <workdir>/<profile> folder of a run "
                           "(relative to the repository root), after `rqakit reproduce --profile PROFILE`")
        self.stages = {d.name: found for d in sorted(self.root.iterdir())
                       if d.is_dir() and not d.name.startswith(".") and (found := _stage_result(d)) is not None}
        if not self.systems():
            raise RqaError(f"{self.root} holds no completed stage with test runs; run the profile first "
                           f"(`rqakit reproduce --profile {self.root.name}`)")

    @cached_property
    def config(self) -> RunConfig:
        """The run's config, from a stage's config.json (every stage of one run writes the same)."""
        for folder in self.stages.values():
            if (folder / "config.json").exists():
                return config_from_dict(json.loads((folder / "config.json").read_text()))
        raise RqaError(f"no stage of {self.root} has a config.json; rebuild it with this kit version")

    @cached_property
    def workspace(self):
        from .stages import Workspace

        return Workspace(self.config, root=self.root)

    @property
    def test(self):
        return self.workspace.test

    def systems(self) -> dict[str, Path]:
        """{"<stage>/<run name>": path} of every test run, in stage order."""
        out = {}
        for stage, folder in self.stages.items():
            files = StageFolder(folder)
            for name in files.run_names():
                if name.endswith(TEST_SUFFIX):
                    out[f"{stage}/{name[: -len(TEST_SUFFIX)]}"] = files.run_path(name)
        return out

    def _check_system(self, system: str) -> Path:
        systems = self.systems()
        if system not in systems:
            raise RqaError(f"no system {system!r} in {self.root}; choose one of: {', '.join(systems)}")
        return systems[system]

    def run(self, system: str) -> Run:
        return read_trec_run(self._check_system(system))

    def check_query(self, qid: str) -> str:
        qid = str(qid)
        if qid not in self.test.queries:
            raise RqaError(f"query {qid!r} is not in the test split {self.test.dataset_id!r}; "
                           f"choose one of {', '.join(sorted(self.test.queries)[:5])}, ...")
        return qid

    def per_query(self, system: str, measure: str = "nDCG@10") -> pd.Series:
        """Per-query values of `measure` on the test split (ir_measures; by answers where the split has them)."""
        texts = passage_texts(self.workspace.corpus) if self.test.answers else None
        frame = per_query_split(self.run(system), self.test, [measure], texts, self.config.evaluate.relevance)
        return frame.set_index("query_id")["value"].rename(system)

    def means(self, measure: str = "nDCG@10") -> pd.Series:
        """Mean `measure` of every system on the test split, best first."""
        return pd.Series({s: self.per_query(s, measure).mean() for s in self.systems()},
                         name=measure).sort_values(ascending=False).rename_axis("system")

    def compare(self, a: str, b: str, measure: str = "nDCG@10") -> pd.DataFrame:
        """One row per test query: query text, `measure` of A and of B, and B - A (sorted by it)."""
        frame = pd.concat([self.per_query(a, measure).rename("A"), self.per_query(b, measure).rename("B")], axis=1)
        frame["B - A"] = frame["B"] - frame["A"]
        frame.insert(0, "query", [self.test.queries.get(q, "") for q in frame.index])
        return frame.sort_values("B - A", ascending=False).rename_axis("query_id")

    @cached_property
    def dropped(self) -> Counter:
        """doc id -> number of training queries for which augment dropped it (empty without augment)."""
        path = self.stages.get("augment", Path("/nonexistent")) / "candidates.parquet"
        if not path.exists():
            return Counter()
        cand = pd.read_parquet(path, columns=["query_id", "doc_id", "fate"])
        return Counter(cand.loc[cand["fate"] == "dropped", "doc_id"].astype(str))

    def ce_source(self) -> str | None:
        """The re-ranker run that supplies CE logits: the warm re-ranker on the warm retriever, else any re-ranker."""
        rerankers = [s for s in self.systems() if _is_reranker(s)]
        preferred = [s for s in rerankers if s == "warmup_ce/warmup_ce.warmup_de"]
        return (preferred or rerankers or [None])[0]

    def side_by_side(self, qid: str, a: str, b: str, k: int = 10, ce_system: str | None = None,
                     width: int = 70) -> pd.DataFrame:
        """The top k of A and of B for one test query, rank by rank: doc id, label (qrels grade),
        CE logit (from `ce_system`, default `ce_source()`), times dropped in augment, passage."""
        qid = self.check_query(qid)
        ce_system = ce_system or self.ce_source()
        ce = self.run(ce_system).get(qid, {}) if ce_system else {}
        labels = self.test.qrels.get(qid, {})
        columns = {}
        for tag, system in (("A", a), ("B", b)):
            top = ranked(self.run(system).get(qid, {}))[:k]
            ids = [d for d, _ in top] + [""] * (k - len(top))
            docs = self.workspace.corpus.get_many([d for d in ids if d])
            texts = iter(self.workspace.corpus.passage_text(d) for d in docs)
            columns[(tag, "doc_id")] = ids
            columns[(tag, "label")] = [labels.get(d, 0) if d else np.nan for d in ids]
            columns[(tag, "CE logit")] = [(round(ce[d], 3) if d in ce else NOT_RERANKED) if d else "" for d in ids]
            columns[(tag, "dropped")] = [self.dropped.get(d, 0) if d else np.nan for d in ids]
            columns[(tag, "passage")] = [_shorten(next(texts), width) if d else "" for d in ids]
        frame = pd.DataFrame(columns, index=pd.RangeIndex(1, k + 1, name="rank"))
        frame.columns = pd.MultiIndex.from_tuples([(f"{t}: {a if t == 'A' else b}", c) for t, c in frame.columns])
        return frame

    def worked_examples(self, a: str, b: str, n: int = 3, measure: str = "nDCG@10") -> dict[str, list[str]]:
        """The n queries B helped most and the n it hurt most against A (ties dropped: no change)."""
        frame = self.compare(a, b, measure)
        helped = frame[frame["B - A"] > 0].head(n).index.tolist()
        hurt = frame[frame["B - A"] < 0].sort_values("B - A").head(n).index.tolist()
        return {"helped": helped, "hurt": hurt}

    def model_folder(self, system: str, kind: str = "dual_encoder") -> Path:
        """The saved model behind a system's run: its stage's `retriever/`, `reranker/` or `model/`."""
        self._check_system(system)
        stage, name = system.split("/", 1)
        for sub in (name, "model", "retriever" if kind == "dual_encoder" else "reranker"):
            card = self.stages[stage] / sub / "rqakit.json"
            if card.is_file() and json.loads(card.read_text()).get("kind") == kind:
                return card.parent
        raise RqaError(f"system {system!r} has no saved {kind.replace('_', ' ')}; choose a trained retriever or re-ranker")

    def ask(self, text: str, system: str | None = None, k: int = 10, rerank: str | None = None) -> pd.DataFrame:
        """A free-text query against the run's collection (`rqakit search`, embeddings cached): the top k
        of `system`'s retriever (default B of `default_pair`), re-ranked by the re-ranker of the system
        `rerank` names; labels when the text is a query of the test split."""
        from .ask import ask

        data = self.config.data
        answer = ask(text, retriever=str(self.model_folder(system or default_pair(self)[1])), k=k,
                     rerank=str(self.model_folder(rerank, "cross_encoder")) if rerank else None,
                     dataset=data.eval or data.train, use_titles=data.use_titles,
                     precision=self.config.runtime.precision)
        return pd.DataFrame(answer["hits"]).set_index("rank")


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def default_pair(rf: RunFolder) -> tuple[str, str]:
    """(A, B) to compare: static vs dynamic retriever (same m and seed) when both ran, else the warm
    retriever vs a dynamic one, else BM25 vs a dense retriever (the warm one first, zero-shot last)."""
    systems = list(rf.systems())
    dynamic = [s for s in systems if s.startswith("joint-dynamic-") and s.endswith("/retriever")]
    for b in dynamic:
        static = b.replace("joint-dynamic-", "joint-static-", 1)
        if static in systems:
            return static, b
    if dynamic and "warmup_de/warmup_de" in systems:
        return "warmup_de/warmup_de", dynamic[0]
    dense = sorted((s for s in systems if not s.startswith("baselines/bm25") and not _is_reranker(s)),
                   key=lambda s: (s.startswith("baselines/"), s != "warmup_de/warmup_de"))   # trained first
    if "baselines/bm25" in systems and dense:
        return "baselines/bm25", dense[0]
    if len(systems) < 2:
        raise RqaError(f"{rf.root} has fewer than two test runs to compare; run more stages of the profile")
    return systems[0], systems[1]


def plot_scatter(frame: pd.DataFrame, ax, a: str, b: str, measure: str = "nDCG@10", highlight=()):
    """One dot per test query: `measure` of A (x) against B (y); above the diagonal B wins."""
    ax.scatter(frame["A"], frame["B"], s=14, alpha=0.6)
    marked = frame.loc[[q for q in highlight if q in frame.index]]
    ax.scatter(marked["A"], marked["B"], s=80, facecolors="none", edgecolors="C3")
    for qid, row in marked.iterrows():
        ax.annotate(str(qid), (row["A"], row["B"]), fontsize=8, xytext=(4, 4), textcoords="offset points")
    ax.plot([0, 1], [0, 1], color="gray", ls=":")
    ax.set_xlabel(f"{measure}, A: {a}")
    ax.set_ylabel(f"{measure}, B: {b}")
    wins, losses = int((frame["B - A"] > 0).sum()), int((frame["B - A"] < 0).sum())
    ax.set_title(f"{len(frame)} test queries: B better on {wins}, worse on {losses}")
    return ax


def scatter_png(frame: pd.DataFrame, a: str, b: str, measure: str, qid: str | None) -> bytes:
    """The scatter as PNG bytes, drawn on its own Figure (no pyplot state to leak between redraws)."""
    import io

    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 5), layout="constrained")
    plot_scatter(frame, fig.add_subplot(), a, b, measure, highlight=[qid] if qid else [])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def explorer_widget(rf: RunFolder, a: str | None = None, b: str | None = None, k: int = 10,
                    measure: str = "nDCG@10"):
    """Dropdowns for A, B and the query (ordered by B - A, so the one B helped most comes first and
    is shown at once), a slider for k; the scatter marks the chosen query. Every change redraws the
    scatter (an image widget, replaced in place) and the table once. For a live kernel (JupyterLab)."""
    import ipywidgets as widgets
    from IPython.display import display

    if a is None or b is None:
        a, b = default_pair(rf)
    names = list(rf.systems())
    pick_a = widgets.Dropdown(options=names, value=a, description="A")
    pick_b = widgets.Dropdown(options=names, value=b, description="B")
    pick_q = widgets.Dropdown(options=[], description="query", layout=widgets.Layout(width="70%"))
    depth = widgets.IntSlider(value=k, min=1, max=30, description="top k")
    scatter, table_out = widgets.Image(format="png", layout=widgets.Layout(width="450px")), widgets.Output()
    state = {"quiet": False, "draws": 0}

    def draw():
        qid = pick_q.value
        scatter.value = scatter_png(state["frame"], pick_a.value, pick_b.value, measure, qid)
        with table_out:
            table_out.clear_output(wait=True)
            if qid is not None:
                print(rf.test.queries[qid])
                display(rf.side_by_side(qid, pick_a.value, pick_b.value, k=depth.value))
        state["draws"] += 1

    def on_pair(*_):
        if state["quiet"]:
            return
        state["frame"] = frame = rf.compare(pick_a.value, pick_b.value, measure)
        options = [(f"{d:+.3f}  {q}: {text[:80]}", q) for q, text, d in zip(frame.index, frame["query"], frame["B - A"])]
        state["quiet"] = True   # new options and the first query, then one draw
        try:
            pick_q.options = options
            pick_q.value = options[0][1] if options else None
        finally:
            state["quiet"] = False
        draw()

    def on_view(*_):
        if not state["quiet"]:
            draw()

    pick_a.observe(on_pair, names="value")
    pick_b.observe(on_pair, names="value")
    pick_q.observe(on_view, names="value")
    depth.observe(on_view, names="value")
    on_pair()
    box = widgets.VBox([widgets.HBox([pick_a, pick_b]), widgets.HBox([pick_q, depth]), scatter, table_out])
    box.state = state        # draws so far: what the tests count
    return box
