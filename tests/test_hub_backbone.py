"""A Hugging Face hub ID as a backbone: read from the local HF cache offline, a one-line error when absent."""
import shutil

import pytest
import torch

from rqakit.errors import RqaError
from rqakit.models import CrossEncoder, DualEncoder, resolve_backbone
from rqakit.models.backbone import backbone_shape, tiny_backbone_dir

REPO = "rqakit-test/tiny-bert"
REVISION = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An offline HF hub cache (HF_HUB_CACHE layout) holding the tiny BERT as REPO at refs/main."""
    repo = tmp_path / "hub" / f"models--{REPO.replace('/', '--')}"
    snapshot = repo / "snapshots" / REVISION
    shutil.copytree(tiny_backbone_dir(), snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return snapshot


def test_a_cached_hub_id_resolves_to_its_snapshot_and_loads_as_the_same_model(hub_cache):
    assert resolve_backbone(REPO) == str(hub_cache)
    from_hub, from_tiny = DualEncoder.from_backbone(REPO), DualEncoder.from_backbone("tiny")
    for (name, a), (_, b) in zip(from_hub.state_dict().items(), from_tiny.state_dict().items()):
        assert torch.equal(a, b), name
    assert CrossEncoder.from_backbone(REPO).backbone.config.hidden_size == 32


def test_plan_reads_the_cached_config_of_a_hub_id(hub_cache):
    config, source = backbone_shape(REPO)
    assert source == "config.json"
    assert (config.num_hidden_layers, config.hidden_size, config.intermediate_size) == (2, 32, 64)


def test_an_uncached_hub_id_offline_is_a_one_line_error_naming_it(hub_cache):
    with pytest.raises(RqaError, match=r"'rqakit-test/not-cached' \(a Hugging Face hub ID\).*HF_HUB_OFFLINE") as error:
        resolve_backbone("rqakit-test/not-cached")
    assert "\n" not in str(error.value)
    with pytest.raises(RqaError, match="shape is not known"):
        backbone_shape("rqakit-test/not-cached")


@pytest.mark.parametrize("name", ["./no-such-folder", "/no/such/folder", "~/no-such-folder", ".hidden/model"])
def test_a_string_that_looks_like_a_path_keeps_the_folder_error(hub_cache, name):
    with pytest.raises(RqaError, match="checkpoint folder .* does not exist"):
        resolve_backbone(name)


def test_an_existing_relative_folder_is_a_folder_not_a_hub_id(hub_cache, tmp_path, monkeypatch):
    shutil.copytree(hub_cache, tmp_path / "org" / "model")
    monkeypatch.chdir(tmp_path)
    assert resolve_backbone("org/model") == "org/model"
