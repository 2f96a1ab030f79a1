"""The two RocketQAv2 models: the dual-encoder retriever and the cross-encoder re-ranker."""

from rqakit.models.backbone import resolve_backbone
from rqakit.models.cross_encoder import CrossEncoder
from rqakit.models.dual_encoder import DualEncoder

__all__ = ["CrossEncoder", "DualEncoder", "resolve_backbone"]
