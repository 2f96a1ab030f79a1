"""Stage `st_mnrl`: the practitioner's peer. The same backbone, loaded as a sentence-transformers
model, fine-tuned with sentence-transformers' MultipleNegativesRankingLoss on the (query, positive,
one BM25 hard negative) triples `warmup_de` trains on, then read as it is used: its own `encode`,
normalised, exact inner-product search.

The recipe is the library's stock one: MNRL (cosine x scale 20, in-batch negatives plus the hard
negatives), AdamW with weight decay 0.01, lr 2e-5, 10 % linear warm-up then linear decay, gradient
clip 1, batch 16, one epoch, max length 256. It runs in the kit's training loop (checkpoints,
resume, bf16 autocast on a bf16 CPU) with the library's model and loss; `bf16: false` trains in
fp32 as the library's own loop does.

Settings come from the `st_mnrl` config section (1 epoch, batch 16, lr 2e-5, max length 256); the training
pairs follow `warmup_de` (`warmup_de.bm25_depth`, `warmup_de.seed`), so both recipes see one set
of triples. Writes `model/` (a sentence-transformers folder), `runs/st-mnrl.{val,test}.trec`,
`history.json` and `metrics.json` (test).
"""
from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch
from torch import nn

from ..artifacts import work_dir
from ..config import plain
from ..models import resolve_backbone
from ..objectives import ListExample
from ..runs import Run
from ..runtime import pick_device
from ..search import search_query_sets
from ..training import OptimSettings
from ..types import Doc, passage_text
from .common import fit, make_plan, metrics_of, save_run, write_json
from .warmup_de import bm25_training_pairs
from .workspace import SPLITS, Workspace

NEEDS = ("baselines",)
READS = (*SPLITS, "data.answer_free_negatives", "model.backbone", "st_mnrl", "warmup_de.bm25_depth", "warmup_de.seed",
         "evaluate.retrieve_depth", "evaluate.measures", "evaluate.relevance")  # the triples are warmup_de's
RUN_NAME = "st-mnrl"
CORPUS_CHUNK = 50_000       # passages encoded per call, so memory stays flat on a large corpus


def settings(cfg) -> dict:
    """The recipe: the `st_mnrl` config section (rqakit.config.StMnrlConfig) as a dict."""
    return dataclasses.asdict(plain(cfg.st_mnrl))


def load_sentence_transformer(backbone: str, *, max_length: int, device: torch.device | str = "cpu"):
    """resolve_backbone(backbone) as a SentenceTransformer, local files only.

    A sentence-transformers folder (all-MiniLM-L6-v2) keeps its modules (mean pooling, Normalize);
    a plain transformers folder (the tiny BERT) gets mean pooling from the library.
    """
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(resolve_backbone(backbone), device=str(device), local_files_only=True)
    model.max_seq_length = max_length
    return model


class MNRLObjective(nn.Module):
    """sentence-transformers' MultipleNegativesRankingLoss over ListExamples, for the kit's loop.

    A micro-batch of B examples with k passages each (positive at index 0) becomes k + 1 columns:
    queries, positives, negatives. Query i is scored against all B*k passages (cosine x scale) and
    must pick passage i of the positive column: -log softmax(scale * cos(q_i, P))[i].
    """

    def __init__(self, model, passage_text: Callable[[Doc], str], *, scale: float = 20.0):
        super().__init__()
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

        self.loss = MultipleNegativesRankingLoss(model, scale=scale)
        self.passage_text = passage_text

    @property
    def model(self):
        return self.loss.model

    def collate(self, examples: list[ListExample]) -> list[dict]:
        """k + 1 tokenised columns: [queries (B,), passages 0 (B,), ..., passages k-1 (B,)]."""
        k = len(examples[0].docs)
        columns = [[e.query for e in examples]]
        columns += [[self.passage_text(e.docs[j]) for e in examples] for j in range(k)]
        return [self.model.preprocess(texts) for texts in columns]

    def forward(self, batch: list[dict]) -> dict:
        from sentence_transformers.util import batch_to_device

        device = next(self.model.parameters()).device
        embeddings = [self.model(batch_to_device(column, device))["sentence_embedding"] for column in batch]  # (B, d) each
        with torch.autocast(device.type, enabled=False):  # cosine and softmax in fp32
            loss = self.loss.compute_loss_from_embeddings([e.float() for e in embeddings], None)
        return {"loss": loss}


def encode_texts(model, texts: list[str], batch_size: int) -> np.ndarray:
    """Texts -> (n, d) float32 unit vectors, through the model's own encode."""
    return model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                        show_progress_bar=False)


def retrieve(model, corpus, query_sets: Mapping[str, Mapping[str, str]], depth: int, *,
             batch_size: int = 64, log=print) -> dict[str, Run]:
    """Encode the corpus CORPUS_CHUNK passages at a time ("title text"; float16 shards) and search
    every query set exactly by inner product: {name: {qid: text}} -> {name: run}."""
    shards, docs = [], corpus.iter_docs()
    while chunk := list(itertools.islice(docs, CORPUS_CHUNK)):
        embeddings = encode_texts(model, [passage_text(doc) for doc in chunk], batch_size)
        shards.append(([doc.doc_id for doc in chunk], embeddings.astype(np.float16)))
        log(f"[st_mnrl] encoded {sum(len(ids) for ids, _ in shards)} passages")
    return search_query_sets(lambda texts: encode_texts(model, texts, batch_size), shards, query_sets, depth)


def fine_tune(ws: Workspace, examples: list[ListExample], recipe: dict, folder: Path, log=print):
    """One sentence-transformers model trained on `examples` with MNRL -> (model, TrainResult)."""
    cfg = ws.cfg
    device = pick_device(cfg.runtime.device)
    model = load_sentence_transformer(cfg.model.backbone, max_length=recipe["max_length"], device=device)
    objective = MNRLObjective(model, passage_text, scale=recipe["scale"])
    # The library's loader keeps the last, smaller batch: every triple is seen once per epoch.
    plan = make_plan(len(examples), batch_size=recipe["batch_size"], micro_batch_size=recipe["batch_size"],
                     epochs=recipe["epochs"], seed=cfg.st_mnrl.seed, drop_last=False)
    result = fit(objective, examples, plan, ws=ws, section=cfg.st_mnrl, folder=folder, desc="st_mnrl", log=log,
                 optim=OptimSettings(lr=recipe["lr"], weight_decay=recipe["weight_decay"],
                                     warmup_ratio=recipe["warmup_ratio"], schedule="linear", clip=1.0),
                 precision=bool(recipe["bf16"]))
    return model.eval(), result


def run(ws: Workspace, force: bool = False, log=print) -> Path:
    ws.apply()  # this config's threads, dropout masks and precision, before anything computes

    cfg, recipe = ws.cfg, settings(ws.cfg)
    base = ws.upstream("st_mnrl", log)["baselines"]
    folder = ws.folder("st_mnrl")

    def build(tmp: Path) -> dict:
        examples = bm25_training_pairs(ws, base, work_dir(folder))
        model, result = fine_tune(ws, examples, recipe, folder, log=log)
        model.save(str(tmp / "model"))
        runs = retrieve(model, ws.corpus, {"val": ws.val.queries, "test": ws.test.queries},
                        cfg.evaluate.retrieve_depth, batch_size=cfg.evaluate.batch_size, log=log)
        for split_name, run_ in runs.items():
            save_run(tmp, f"{RUN_NAME}.{split_name}", run_)
        metrics = {RUN_NAME: metrics_of(runs["test"], ws.test, cfg.evaluate.measures, ws.corpus,
                                        cfg.evaluate.relevance)}
        write_json(tmp / "metrics.json", metrics)
        write_json(tmp / "history.json", result.history)
        log(f"[st_mnrl] {len(examples)} triples, {result.steps} steps, test {metrics[RUN_NAME]}")
        return {"metrics": metrics, "settings": recipe, "train_examples": len(examples), "steps": result.steps,
                "train_wall_time_s": result.wall_time_s, "steps_s": round(result.steps_seconds, 3)}

    return ws.build(folder, ws.hash("st_mnrl"), build, force=force, log=log)
