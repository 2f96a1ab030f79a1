"""The paper's own numbers (Ren et al., EMNLP 2021), as printed, for side tables only.

Values are percentages on MS MARCO passage dev (MRR@10, R@50, R@1000; R@k is a hit rate) and NQ
test (top-k answer accuracy, R@5/20/100). They are never mixed with the kit's rows: the kit
measures other collections, and `results.json` holds only the kit's own numbers. None = "-".

Figure 4 (list size) is published as a plot only; its values are not available in text, so only
the anchors that the tables give are kept (`FIGURE4_ANCHORS`).
"""
from __future__ import annotations

import pandas as pd

SOURCE = "Ren et al., RocketQAv2, EMNLP 2021 (arXiv:2110.07367)"

# Table 2: passage retrieval. Method, PLM, MS MARCO dev MRR@10 / R@50 / R@1000, NQ test R@5 / R@20 / R@100.
TABLE2_COLUMNS = ("Method", "PLM", "MARCO MRR@10", "MARCO R@50", "MARCO R@1000", "NQ R@5", "NQ R@20", "NQ R@100")
TABLE2 = (
    ("BM25 (anserini)", "-", 18.7, 59.2, 85.7, None, 59.1, 73.7),
    ("DPR (single)", "BERT-base", None, None, None, None, 78.4, 85.4),
    ("DPR-E", "ERNIE-base", 32.5, 82.2, 97.3, 68.4, 80.7, 87.3),
    ("ANCE (single)", "RoBERTa-base", 33.0, None, 95.9, None, 81.9, 87.5),
    ("ColBERT", "BERT-base", 36.0, 82.9, 96.8, None, None, None),
    ("RocketQA", "ERNIE-base", 37.0, 85.5, 97.9, 74.0, 82.7, 88.5),
    ("PAIR", "ERNIE-base", 37.9, 86.4, 98.2, 74.9, 83.5, 89.1),
    ("RocketQAv2 (retriever)", "ERNIE-base", 38.8, 86.2, 98.1, 75.1, 83.7, 89.0),
)

# Table 3: passage re-ranking, MS MARCO dev MRR@10.
TABLE3_COLUMNS = ("Method", "PLM", "#candidates", "Retriever", "MRR@10")
TABLE3 = (
    ("BM25 (anserini)", "-", "-", "-", 18.7),
    ("ColBERT", "BERT-base", 1000, "BM25", 34.9),
    ("BERT-large", "BERT-large", 1000, "BM25", 36.5),
    ("RepBERT", "BERT-large", 1000, "RepBERT", 37.7),
    ("Multi-stage", "BERT-base", 1000, "BM25", 39.0),
    ("CAKD", "DistilBERT", 1000, "BM25", 39.0),
    ("ME-BERT", "BERT-large", 1000, "ME-BERT", 39.5),
    ("ME-HYBRID", "BERT-large", 1000, "ME-HYBRID", 39.4),
    ("TFR-BERT", "BERT-large", 1000, "BM25", 40.5),
    ("RocketQA (re-ranker)", "ERNIE-base (as printed)", 50, "RocketQA", 40.9),
    ("RocketQAv2 (re-ranker)", "ERNIE-base", 1000, "BM25", 40.1),
    ("RocketQAv2 (re-ranker)", "ERNIE-base", 50, "RocketQA", 41.8),
    ("RocketQAv2 (re-ranker)", "ERNIE-base", 50, "RocketQAv2 (retriever)", 41.9),
)

# Table 4: ablations, retriever on MS MARCO dev, 8 instances per query (NQ "similar and omitted").
TABLE4_COLUMNS = ("Variant", "MRR@10", "R@50")
TABLE4 = (
    ("RocketQAv2 (retriever), 8 instances", 37.4, 84.9),
    ("w/ Static Distillation", 36.0, 84.5),
    ("w/ Pointwise re-ranker", 36.3, 83.9),
    ("w/o Denoised Instances", 36.3, 84.9),
)

# Figure 4: MRR@10 vs instances per query on MS MARCO. Only these points appear in the tables.
FIGURE4_COLUMNS = ("Instances per query", "Model", "MRR@10", "Where printed")
FIGURE4_ANCHORS = (
    (8, "retriever", 37.4, "Table 4"),
    (128, "retriever", 38.8, "Table 2"),
    (128, "re-ranker", 41.9, "Table 3 (top-50 of the RocketQAv2 retriever)"),
)

CAPTIONS = {
    "table2": "Paper Table 2: passage retrieval, MS MARCO dev and NQ test (%, R@k = hit rate); selected rows.",
    "table3": "Paper Table 3: passage re-ranking, MS MARCO dev MRR@10 (%).",
    "table4": "Paper Table 4: ablations of the retriever, MS MARCO dev, 8 instances per query (%).",
    "figure4": "Paper Figure 4 (list size): the plotted values are not published in text; "
               "only these anchors from Tables 2-4 are known.",
}


def paper_tables() -> dict[str, pd.DataFrame]:
    """{"table2", "table3", "table4", "figure4"} -> the paper's numbers as printed."""
    return {
        "table2": pd.DataFrame(TABLE2, columns=TABLE2_COLUMNS),
        "table3": pd.DataFrame(TABLE3, columns=TABLE3_COLUMNS),
        "table4": pd.DataFrame(TABLE4, columns=TABLE4_COLUMNS),
        "figure4": pd.DataFrame(FIGURE4_ANCHORS, columns=FIGURE4_COLUMNS),
    }
