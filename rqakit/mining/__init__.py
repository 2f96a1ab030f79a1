"""Hybrid data augmentation, by concept: calibration (CE logit -> probability), denoising and list
building, and the list files joint training reads.

    from rqakit.mining import Calibrator, build_lists, read_lists
"""
from .calibration import CALIBRATION_METHODS, Calibrator, labelled_pairs
from .files import LIST_COLUMNS, LIST_KINDS, TrainingLists, read_lists, training_lists, write_lists
from .lists import DenoiseRule, answer_bearing, build_lists, calibration_settings, denoise, denoising_quality

__all__ = ["CALIBRATION_METHODS", "Calibrator", "DenoiseRule", "LIST_COLUMNS", "LIST_KINDS", "answer_bearing", "build_lists",
           "calibration_settings", "denoise", "denoising_quality", "labelled_pairs", "read_lists", "TrainingLists",
           "training_lists", "write_lists"]
