"""The walkthrough's steps on a small slice of a collection, each a call into the kit's own code.

`notebooks/walkthrough.ipynb` runs these in the paper's order on a few dozen training queries:

    take_slice        the queries (half with several positives) and the passages the retriever searches
    mine              hard negatives mined by the retriever (§4.3): each query's top-n by s_de (Eq. 1)
    warm_up_reranker  RocketQA step 2 in miniature: the listwise re-ranker on the mined lists (Eq. 5)
    list_scores       one list's s_de and s_ce; `list_distributions` softmaxes them (Eq. 2-3)
    leading_list      a query whose list the re-ranker ranks right, more surely than the retriever
    kl_gradients      L_KL both ways (Eq. 4 and the official code) and where its gradient goes
    dynamic_steps     a few steps of L_final = L_sup + L_KL (Eq. 6), both distributions per step
    denoising_table   one query's candidates: CE logit, calibrated probability, decision
    score_window      the re-ranker's logits on every query's scored window (for `rqakit.audit`)
    positive_ranks    where each model puts the labelled positive in that window

Everything is plain data in and out (dicts, numpy, pandas); the towers are the kit's DualEncoder
and CrossEncoder, the losses those of `rqakit.losses`, the loops those of `rqakit.training`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .audit import hide_one_positive
from .data.collection import Corpus, Split
from .encode import encode_passages, encode_queries
from .errors import RqaError
from .losses import distillation_kl, listwise_ce_loss
from .mining import Calibrator, DenoiseRule, denoise
from .objectives import JointDistillation, ListExample, ListwiseReranker
from .runs import ranked
from .search import BM25Index, dense_search
from .stages import augment
from .training import OptimSettings, make_plan, train

CPU = torch.device("cpu")


@dataclass
class Slice:
    """A few training queries and the passages their retriever searches.

    split: the chosen queries with the labels the miner sees (one positive of each multi-positive
    query hidden); hidden: qid -> the hidden positive; pool: doc ids searched (the queries' BM25 top
    `pool_depth` and every labelled or hidden positive).
    """

    split: Split
    hidden: dict[str, str]
    pool: list[str]


def take_slice(train: Split, corpus: Corpus, *, n_queries: int = 24, n_multi: int = 12, pool_depth: int = 20,
               seed: int = 0) -> Slice:
    """`n_multi` queries with two or more positives and `n_queries - n_multi` with one, drawn by `seed`;
    the retriever searches the union of their BM25 top `pool_depth` (not the whole corpus: minutes)."""
    multi = sorted(q for q in train.qrels if len(train.positives(q)) >= 2)
    single = sorted(q for q in train.qrels if len(train.positives(q)) == 1)
    if n_multi > len(multi) or n_queries - n_multi > len(single) or n_multi > n_queries:
        raise RqaError(f"cannot take {n_multi} multi-positive and {n_queries - n_multi} single-positive queries from "
                       f"{len(multi)} and {len(single)}; lower n_queries or n_multi")
    rng = np.random.default_rng(seed)
    qids = sorted([*rng.choice(multi, n_multi, replace=False), *rng.choice(single, n_queries - n_multi, replace=False)])
    chosen = train.subset([str(q) for q in qids], name="slice")
    visible, hidden = hide_one_positive(chosen, seed)
    bm25 = BM25Index.build(corpus).search(chosen.queries, pool_depth)
    pool = dict.fromkeys(d for q in chosen.queries for d, _ in ranked(bm25[q]))
    pool.update(dict.fromkeys(d for q in chosen.queries for d in chosen.positives(q)))
    return Slice(visible, hidden, list(pool))


def mine(dual_encoder, sl: Slice, corpus: Corpus, depth: int = 15, batch_size: int = 32) -> dict[str, list[str]]:
    """Hard negatives mined by the retriever: each query's top `depth` passages of the pool by
    s_de(q, p) = E_Q(q)ᵀ E_P(p) (Eq. 1), exact inner-product search (faiss). qid -> doc ids, best first."""
    qids = sorted(sl.split.queries)
    q_emb = encode_queries(dual_encoder, [sl.split.queries[q] for q in qids], batch_size=batch_size, progress=False)
    p_emb = encode_passages(dual_encoder, corpus.get_many(sl.pool), batch_size=batch_size, progress=False)
    run = dense_search(q_emb, [(sl.pool, p_emb / dual_encoder.temperature)], depth, query_ids=qids)
    return {q: [d for d, _ in ranked(run[q])] for q in qids}


def reranker_lists(split: Split, candidates: dict[str, list[str]], corpus: Corpus, *, list_size: int, epochs: int,
                   seed: int) -> list[list[ListExample]]:
    """RocketQA step 2's lists, per epoch: a labelled positive + m-1 negatives drawn afresh from the
    query's retrieved candidates that are not labelled positives (a hidden positive can be drawn:
    a false negative, the noise denoising is for)."""
    per_epoch = []
    for epoch in range(epochs):
        lists = []
        for i, qid in enumerate(sorted(candidates)):
            positives = split.positives(qid)
            pool = [d for d in candidates[qid] if d not in positives]
            if not positives or len(pool) < list_size - 1:
                continue
            rng = np.random.default_rng([seed, epoch, i])
            chosen = [positives[int(rng.integers(len(positives)))],
                      *(pool[j] for j in rng.choice(len(pool), list_size - 1, replace=False))]
            lists.append(ListExample(split.queries[qid], corpus.get_many(chosen)))
        per_epoch.append(lists)
    return per_epoch


def warm_up_reranker(cross_encoder, split: Split, candidates: dict[str, list[str]], corpus: Corpus, *,
                     list_size: int = 4, steps: int = 24, batch_queries: int = 4, lr: float = 1e-4,
                     seed: int = 1) -> pd.DataFrame:
    """Train the re-ranker with the listwise loss L_sup (Eq. 5) on `steps` batches of lists
    (10 % linear warm-up, then linear decay; the kit's training loop). Returns the loss per step."""
    per_epoch_lists = max(1, len(candidates))
    epochs = math.ceil(steps * batch_queries / per_epoch_lists)
    examples, plan = [], []
    for e, lists in enumerate(reranker_lists(split, candidates, corpus, list_size=list_size, epochs=epochs, seed=seed)):
        offset = len(examples)
        examples += lists
        plan += [[[offset + i for i in micro] for micro in step]
                 for step in make_plan(len(lists), batch_size=batch_queries, micro_batch_size=batch_queries,
                                       epochs=1.0, seed=seed + e)]
    plan = plan[:steps]
    objective = ListwiseReranker(cross_encoder)
    result = train(objective, [[[examples[i] for i in micro] for micro in step] for step in plan], objective.collate,
                   optim=OptimSettings(lr=lr, warmup_ratio=0.1, schedule="linear", weight_decay=0.01, clip=1.0),
                   device=CPU, desc="warm re-ranker", seed=seed, log=lambda *_: None)
    return pd.DataFrame(result.history)[["step", "loss", "acc", "seconds"]]


def training_list(split: Split, candidates: dict[str, list[str]], qid: str, list_size: int,
                  hidden: dict[str, str] | None = None) -> list[str]:
    """One query's list as the paper draws it: its labelled positive at index 0, then the m-1
    highest-ranked retrieved passages that are not labelled positives (the hardest negatives).
    With `hidden`, the query's hidden positive, when retrieved, takes the last place (a false
    negative to watch)."""
    if qid not in split.queries:
        raise RqaError(f"query {qid!r} is not in the slice; choose one of {', '.join(sorted(split.queries)[:5])}, ...")
    positives = split.positives(qid)
    negatives = [d for d in candidates[qid] if d not in positives]
    hid = (hidden or {}).get(qid)
    chosen = negatives[: list_size - 1]
    if hid in negatives and hid not in chosen:
        chosen[-1] = hid
    if len(chosen) < list_size - 1:
        raise RqaError(f"query {qid!r} has {len(chosen)} retrieved negatives, fewer than m-1 = {list_size - 1}; "
                       "mine deeper or lower the list size")
    return [positives[0], *chosen]


def list_table(split: Split, corpus: Corpus, doc_ids, qid: str, hidden: dict[str, str] | None = None,
               width: int = 90) -> pd.DataFrame:
    """One list to read: position, doc id, what the labels say (and whether it is the hidden
    positive), and the passage shortened to `width` characters."""
    labelled, hid = set(split.positives(qid)), (hidden or {}).get(qid)
    docs = corpus.get_many(list(doc_ids))
    texts = [corpus.passage_text(d) for d in docs]
    return pd.DataFrame({"position": range(len(docs)), "doc_id": list(doc_ids),
                         "labels say": ["positive" if d in labelled else "negative (hidden positive!)" if d == hid
                                        else "negative" for d in doc_ids],
                         "passage": [t if len(t) <= width else t[: width - 3] + "..." for t in texts]})


@torch.no_grad()
def list_scores(dual_encoder, cross_encoder, query: str, docs) -> tuple[np.ndarray, np.ndarray]:
    """One list's scores, in eval mode: s_de (m,) = E_Q(q)ᵀ E_P(p) / τ (Eq. 1) and s_ce (m,) the
    re-ranker's logits (§1.2)."""
    de_mode, ce_mode = dual_encoder.training, cross_encoder.training
    dual_encoder.eval(), cross_encoder.eval()
    q = dual_encoder.encode_queries(dual_encoder.tokenize_queries([query])).float()           # (1, d)
    p = dual_encoder.encode_passages(dual_encoder.tokenize_passages(list(docs))).float()      # (m, d)
    s_de = dual_encoder.score(q, p[None])[0]                                                   # (m,)
    s_ce = cross_encoder(cross_encoder.tokenize_pairs([query] * len(docs), list(docs)))       # (m,)
    dual_encoder.train(de_mode), cross_encoder.train(ce_mode)
    return s_de.numpy().astype(np.float64), s_ce.float().numpy().astype(np.float64)


def teacher_leads(s_de, s_ce) -> bool:
    """The re-ranker ranks the list's positive (index 0) first and gives it more probability than
    the retriever does: distilling from it should raise the retriever's positive."""
    p_de, p_ce = torch.softmax(torch.as_tensor(np.asarray(s_de)), -1), torch.softmax(torch.as_tensor(np.asarray(s_ce)), -1)
    return bool(int(p_ce.argmax()) == 0 and p_ce[0] > p_de[0])


def leading_list(dual_encoder, cross_encoder, split: Split, candidates: dict[str, list[str]], corpus: Corpus,
                 list_size: int, exclude=()) -> str | None:
    """The first query (by id, outside `exclude`) whose training list the re-ranker leads on
    (`teacher_leads`); None when it leads on none."""
    for qid in sorted(split.queries):
        if qid in exclude or len([d for d in candidates[qid] if d not in split.positives(qid)]) < list_size - 1:
            continue
        docs = corpus.get_many(training_list(split, candidates, qid, list_size))
        if teacher_leads(*list_scores(dual_encoder, cross_encoder, split.queries[qid], docs)):
            return qid
    return None


def list_distributions(s_de, s_ce, doc_ids=None) -> pd.DataFrame:
    """P_de and P_ce over one list (Eq. 2-3): softmax of (m,) scores -> one row per passage."""
    s_de, s_ce = torch.as_tensor(np.asarray(s_de)), torch.as_tensor(np.asarray(s_ce))
    frame = pd.DataFrame({"position": range(len(s_de)), "s_de": s_de.numpy(), "s_ce": s_ce.numpy(),
                          "P_de": torch.softmax(s_de, -1).numpy(), "P_ce": torch.softmax(s_ce, -1).numpy()})
    if doc_ids is not None:
        frame.insert(1, "doc_id", list(doc_ids))
    return frame


def kl_gradients(s_de, s_ce, reduction: str = "mean") -> pd.DataFrame:
    """L_KL of one list (B = 1) for both directions and both gradient settings, with its gradient
    on each side's scores. `code`: KL(P_ce ‖ P_de), the official code; `paper`: KL(P_de ‖ P_ce),
    Eq. 4 as printed. kl_grad_to_ce False detaches s_ce (the official code): no gradient reaches
    the re-ranker from the KL. Columns: kl_direction, kl_grad_to_ce, KL, grad_s_de (m,),
    grad_s_ce (m,) and their norms."""
    rows = []
    for direction in ("code", "paper"):
        for grad_to_ce in (False, True):
            de = torch.tensor(np.asarray(s_de, dtype=np.float64))[None].requires_grad_()   # (1, m)
            ce = torch.tensor(np.asarray(s_ce, dtype=np.float64))[None].requires_grad_()   # (1, m)
            kl = distillation_kl(de, ce, direction=direction, grad_to_ce=grad_to_ce, reduction=reduction)
            kl.backward()
            g_de = de.grad[0].numpy()
            g_ce = ce.grad[0].numpy() if ce.grad is not None else np.zeros_like(g_de)
            rows.append({"kl_direction": direction, "kl_grad_to_ce": grad_to_ce, "KL": float(kl.detach()),
                         "grad_s_de": g_de, "grad_s_ce": g_ce, "|grad_s_de|": float(np.linalg.norm(g_de)),
                         "|grad_s_ce|": float(np.linalg.norm(g_ce))})
    return pd.DataFrame(rows)


def supervised_loss(s_ce) -> dict:
    """L_sup of one list (Eq. 5): -log P_ce(positive) and its gradient on s_ce, P_ce - e_0 (m,)."""
    ce = torch.tensor(np.asarray(s_ce, dtype=np.float64))[None].requires_grad_()   # (1, m)
    loss = listwise_ce_loss(ce)
    loss.backward()
    return {"L_sup": float(loss.detach()), "grad_s_ce": ce.grad[0].numpy()}


def dynamic_steps(dual_encoder, cross_encoder, examples: list[ListExample], *, steps: int = 6, lr: float = 5e-5,
                  kl_direction: str = "code", kl_grad_to_ce: bool = False, kl_reduction: str = "mean",
                  watch: int = 0, seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Dynamic listwise distillation on one batch of lists, `steps` times: L_final = L_sup + L_KL
    (Eq. 6, `rqakit.objectives.JointDistillation`), both towers training, constant lr.

    examples: B lists of m passages (positive at index 0); watch: the list whose distributions are
    recorded before the first step and after each. Returns (losses per step: loss, sup, kl;
    distributions: one row per step and position with P_de and P_ce, eval mode).
    """
    objective = JointDistillation(dual_encoder, cross_encoder, kl_direction=kl_direction,
                                  kl_grad_to_ce=kl_grad_to_ce, kl_reduction=kl_reduction)
    watched = examples[watch]

    def record(step: int) -> dict:
        s_de, s_ce = list_scores(dual_encoder, cross_encoder, watched.query, watched.docs)
        return {"P": list_distributions(s_de, s_ce)}

    batch = list(range(len(examples)))
    result = train(objective, [[[examples[i] for i in batch]]] * steps, objective.collate,
                   optim=OptimSettings(lr=lr, warmup_ratio=0.0, schedule="constant", weight_decay=0.01, clip=1.0),
                   device=CPU, eval_fn=record, eval_every=1, desc="dynamic", seed=seed, log=lambda *_: None)
    losses = pd.DataFrame(result.history)[["step", "loss", "sup", "kl"]]
    dists = pd.concat([e["P"].assign(step=e["step"]) for e in result.evals], ignore_index=True)
    return losses, dists


def score_window(cross_encoder, split: Split, candidates: dict[str, list[str]], corpus: Corpus, *,
                 score_depth: int, batch_size: int = 32) -> dict[str, dict[str, float]]:
    """CE logits on each query's first `score_depth` candidates and its labelled positives, as
    `augment` scores them (hidden positives only when retrieved). qid -> {doc id: logit}."""
    return augment.score_window(cross_encoder, split, candidates, corpus, score_depth=score_depth,
                                batch_size=batch_size, progress=False)


def positive_ranks(split: Split, candidates: dict[str, list[str]], ce_scores: dict[str, dict[str, float]],
                   score_depth: int) -> pd.DataFrame:
    """Per query with a labelled positive in its scored window: the rank of its best-placed
    labelled positive by the retriever (retrieval order) and by the re-ranker (CE logit), and the
    reciprocal ranks. A quick check of how much the warm re-ranker knows."""
    rows = []
    for qid in sorted(candidates):
        window, labelled = candidates[qid][:score_depth], set(split.positives(qid))
        if not labelled & set(window):
            continue
        by_ce = sorted(window, key=lambda d: -ce_scores[qid][d])
        de_rank = 1 + min(window.index(d) for d in labelled & set(window))
        ce_rank = 1 + min(by_ce.index(d) for d in labelled & set(window))
        rows.append({"query_id": qid, "retriever rank": de_rank, "re-ranker rank": ce_rank,
                     "retriever RR": 1 / de_rank, "re-ranker RR": 1 / ce_rank})
    return pd.DataFrame(rows)


def denoising_table(split: Split, candidates: dict[str, list[str]], ce_scores: dict[str, dict[str, float]], qid: str,
                    calibrator: Calibrator, *, neg_threshold: float = 0.1, pos_threshold: float = 0.9,
                    score_depth: int = 50, hidden: dict[str, str] | None = None) -> pd.DataFrame:
    """One query's scored window as `augment` sees it: retrieval rank, who it is (labelled
    positive, hidden positive, unlabelled), CE logit, calibrated probability and the decision of
    `rqakit.mining.denoise` (negative, dropped as a likely false negative, pseudo-positive)."""
    if qid not in split.queries:
        raise RqaError(f"query {qid!r} is not in the split; choose one of {', '.join(sorted(split.queries)[:5])}, ...")
    rule = DenoiseRule(neg_threshold=neg_threshold, pos_threshold=pos_threshold, score_depth=score_depth)
    decision = denoise(split, {qid: candidates[qid]}, ce_scores, calibrator=calibrator, rule=rule)[qid]
    fate = {**{d: "negative" for d in decision["negatives"]}, **{d: "dropped" for d in decision["dropped"]},
            **{d: "pseudo-positive" for d in decision["pseudo"]}}
    labelled, hid = set(split.positives(qid)), (hidden or {}).get(qid)
    rows = []
    for rank, doc in enumerate(candidates[qid][:score_depth], start=1):
        logit = ce_scores[qid][doc]
        who = "labelled positive" if doc in labelled else "hidden positive" if doc == hid else "unlabelled"
        rows.append({"rank": rank, "doc_id": doc, "who": who,
                     "ce_logit": logit, "probability": float(calibrator([logit])[0]),
                     "decision": "positive (label)" if doc in labelled else fate[doc]})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------- figures

def plot_distributions(frame: pd.DataFrame, ax, title: str = ""):
    """Bars of P_de and P_ce per list position (position 0 = the positive)."""
    x = np.arange(len(frame))
    ax.bar(x - 0.2, frame["P_de"], 0.4, label="P_de (retriever)")
    ax.bar(x + 0.2, frame["P_ce"], 0.4, label="P_ce (re-ranker)")
    ax.set_xticks(x, ["pos" if i == 0 else f"neg {i}" for i in x])
    ax.set_ylabel("probability over the list")
    ax.set_title(title)
    ax.legend()
    return ax


def plot_dynamic(dists: pd.DataFrame, losses: pd.DataFrame, axes):
    """Left: P_de (solid) and P_ce (dashed) of each passage per step; right: L_sup and L_KL per step."""
    colors = [f"C{i}" for i in range(10)]
    for position, group in dists.groupby("position"):
        label = "pos" if position == 0 else f"neg {position}"
        color = colors[position % 10]
        axes[0].plot(group["step"], group["P_de"], "-o", color=color, label=f"{label} P_de")
        axes[0].plot(group["step"], group["P_ce"], "--", color=color, label=f"{label} P_ce")
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("probability")
    axes[0].legend(fontsize=7, ncol=2)
    axes[1].plot(losses["step"], losses["sup"], "-o", label="L_sup (re-ranker)")
    axes[1].plot(losses["step"], losses["kl"], "-o", label="L_KL (retriever)")
    axes[1].set_xlabel("step")
    axes[1].set_yscale("log")
    axes[1].legend()
    return axes


def plot_denoising(table: pd.DataFrame, ax, neg_threshold: float, pos_threshold: float):
    """Each candidate's calibrated probability by retrieval rank, coloured by the decision."""
    colors = {"positive (label)": "C2", "negative": "C0", "dropped": "C3", "pseudo-positive": "C1"}
    for decision, group in table.groupby("decision"):
        ax.scatter(group["rank"], group["probability"], color=colors.get(decision, "k"), label=decision, zorder=3)
    hid = table[table["who"] == "hidden positive"]
    ax.scatter(hid["rank"], hid["probability"], s=200, facecolors="none", edgecolors="k", label="hidden positive")
    ax.axhline(neg_threshold, color="C0", ls=":", label=f"negative below {neg_threshold}")
    ax.axhline(pos_threshold, color="C1", ls=":", label=f"pseudo-positive above {pos_threshold}")
    ax.set_xlabel("retrieval rank")
    ax.set_ylabel("calibrated P(relevant)")
    ax.legend(fontsize=7)
    return ax


def plot_audit(curve: pd.DataFrame, ax, title: str = ""):
    """Precision and recall of the dropped candidates against the hidden positives, per threshold."""
    ax.plot(curve["neg_threshold"], curve["recall"], "-o", label="recall (hidden positives dropped)")
    ax.plot(curve["neg_threshold"], curve["precision"], "-s", label="precision (dropped that are hidden positives)")
    ax.set_xlabel("negative threshold t (dropped: probability >= t)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return ax
