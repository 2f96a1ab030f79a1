"""Profiles, overrides and their errors, and the config hash that decides what is cached."""
import pytest

from rqakit.config import config_hash, field_help, load_config, profile_names
from rqakit.errors import RqaError


def test_every_profile_loads_and_keeps_the_official_defaults():
    assert {"toy", "scifact", "msmarco", "nq"} <= set(profile_names())
    for name in profile_names():
        cfg = load_config(name)
        assert cfg.joint.kl_direction == "code" and cfg.joint.kl_grad_to_ce is False
        assert cfg.joint.kl_reduction == "mean"
    marco = load_config("msmarco")
    assert (marco.joint.list_size, marco.joint.batch_queries, marco.joint.lr, marco.joint.epochs) == (128, 96, 1e-5, 2)
    nq = load_config("nq")
    assert (nq.joint.list_size, nq.joint.epochs) == (32, 3)


def test_paper_profiles_follow_the_official_code_and_the_cpu_profiles_keep_theirs():
    for name in ("msmarco", "nq"):
        cfg = load_config(name)
        assert (cfg.model.ce_query_max_len, cfg.model.ce_max_len) == (30, 158)          # 30 + 125 + 3
        assert (cfg.warmup_ce.loss, cfg.warmup_ce.warmup_ratio, cfg.warmup_ce.schedule) == ("pointwise", 0.0, "constant")
        assert cfg.augment.calibration == "sigmoid" and cfg.ablations.list_size == 8
        assert cfg.ablations.no_denoise_budget == "steps" and cfg.evaluate.relevance == "auto"
    for name in ("toy", "scifact"):
        cfg = load_config(name)
        assert (cfg.model.ce_query_max_len, cfg.warmup_ce.loss, cfg.warmup_ce.schedule) == (0, "listwise", "linear")
        assert cfg.ablations.list_size is None and cfg.augment.calibration == "platt"


def test_overrides_from_the_command_line_and_from_a_dict():
    cfg = load_config("toy", ["joint.lr=2e-5", "joint.in_batch=true", "data.eval=null"])
    assert cfg.joint.lr == 2e-5 and cfg.joint.in_batch is True and cfg.data.eval is None
    assert load_config("toy", {"augment.list_size": 6}).augment.list_size == 6


@pytest.mark.parametrize("overrides, message", [
    (["joint.nope=1"], "unknown config key 'joint.nope'"),
    (["joint"], "is not key=value"),
    (["augment.neg_threshold=1.5"], "outside \\[0, 1\\]"),
    (["augment.neg_threshold=0.9", "augment.pos_threshold=0.1"], "must be below"),
    (["joint.kl_direction=sideways"], "choose one of: code, paper"),
    (["joint.list_size=1"], "at least 1 negative"),
    (["joint.list_size=6"], "joint.list_size = 6 is larger than the lists augment builds .augment.list_size = 4."),
    (["ablations.list_sizes=[2, 8]"], "ablations.list_sizes = 8 is larger than the lists augment builds"),
    (["augment.score_depth=80"], "augment.score_depth .80. is deeper than augment.retrieve_depth .60."),
    (["warmup_ce.depth=2"], "warmup_ce.depth .2. cannot supply the 3 negatives"),
    (["data.val_fraction=0"], "data.val_fraction = 0.0 must be between 0 and 1"),
    (["ablations.list_size=1"], "ablations.list_size = 1: a list needs 1 positive"),
    (["ablations.no_denoise_budget=lists"], "choose one of: steps, epochs"),
    (["warmup_ce.loss=pairwise"], "choose one of: listwise, pointwise"),
    (["warmup_ce.schedule=cosine"], "choose one of: linear, constant"),
    (["evaluate.relevance=grades"], "choose one of: auto, qrels, answers"),
    (["augment.calibration_prior=1.5"], "between 0 and 1 \\(exclusive\\), or null"),
    (["model.ce_query_max_len=158"], "leaves no room for the passage"),
])
def test_bad_overrides_say_what_to_do(overrides, message):
    with pytest.raises(RqaError, match=message):
        load_config("toy", overrides)


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(RqaError, match="unknown profile 'scifcat'; choose one of: .*scifact"):
        load_config("scifcat")


def test_hash_follows_the_sections_a_stage_reads():
    a, b = load_config("toy"), load_config("toy", {"joint.lr": 3e-4})
    assert config_hash(a, "data", "model") == config_hash(b, "data", "model")
    assert config_hash(a, "joint") != config_hash(b, "joint")
    assert config_hash(a) == config_hash(load_config("toy"))


def test_every_field_has_help():
    helps = field_help()
    assert "joint.kl_direction" in helps and all(helps.values())


def test_the_library_checks_are_the_config_checks():
    """mining and losses check their arguments with the functions config.validate uses."""
    import torch

    from rqakit.losses import joint_loss
    from rqakit.mining import Calibrator, DenoiseRule, build_lists

    with pytest.raises(RqaError, match="joint.kl_direction = 'both'; choose one of: code, paper"):
        joint_loss(torch.zeros(1, 2), torch.zeros(1, 2), kl_direction="both")
    with pytest.raises(RqaError, match="neg_threshold .0.9. must be below pos_threshold .0.1."):
        build_lists(None, {}, {}, list_size=4, calibrator=Calibrator("sigmoid"), rule=DenoiseRule(0.9, 0.1))
