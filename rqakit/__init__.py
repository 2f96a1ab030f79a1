"""rqakit: a reproducibility kit for RocketQAv2 (Ren et al., EMNLP 2021)."""

__version__ = "0.1.0"
