"""The report's systems, named once: every row name a results.json table uses, in table order,
with the label its table shows. `results` produces the rows, `tables` and `readme` lay them out.
"""
from __future__ import annotations

BASELINE_SYSTEMS = ("bm25", "zeroshot-mean", "zeroshot-cls")       # the baselines stage's runs
HYBRIDS = {"dynamic": "hybrid", "static": "hybrid-static"}          # joint variant -> its fused system

# Retrieval systems in table order, with what each row is.
RETRIEVAL_LABELS = {
    "bm25": "BM25 (bm25s)",
    "zeroshot-mean": "backbone zero-shot, mean pooling",
    "zeroshot-cls": "backbone zero-shot, [CLS]",
    "fusion-zeroshot": "BM25 + backbone zero-shot (mean), RRF k = 60: nothing trained or chosen",
    "fusion-zeroshot-tuned": "BM25 + backbone zero-shot (mean), fusion chosen on validation as the hybrids'",
    "warmup_de": "warm retriever (RocketQA step 1)",
    "st-mnrl": "sentence-transformers MNRL fine-tune (peer)",
    "static": "joint, static distillation",
    "dynamic": "joint, dynamic distillation (RocketQAv2)",
    "hybrid-static": "BM25 + static, fused (kit's own row)",
    "hybrid": "BM25 + dynamic, fused (kit's own row)",
}
RERANK_ORDER = (("warmup_ce@bm25", "warm CE (RocketQA step 2)", "bm25"),
                ("warmup_ce@warmup_de", "warm CE (RocketQA step 2)", "warmup_de"),
                ("warmup_ce@static", "warm CE (RocketQA step 2)", "static"),
                ("warmup_ce@dynamic", "warm CE (RocketQA step 2)", "dynamic"),
                ("joint_ce@bm25", "joint CE (RocketQAv2), dynamic runs", "bm25"),
                ("joint_ce@static", "joint CE of the same seed", "static"),
                ("joint_ce@dynamic", "joint CE (RocketQAv2), its own run", "dynamic"))
ABLATION_LABELS = {
    "dynamic": "RocketQAv2 (dynamic listwise distillation)",
    "static": "w/ static distillation",
    "pointwise": "w/ pointwise re-ranker",
    "no-denoise": "w/o denoised lists",
}
RETRIEVAL_ORDER = tuple(RETRIEVAL_LABELS)
