"""CPU dropout: dropout's law, masks fixed by torch's seed, inference untouched, padding respected."""
import json

import pytest
import torch
from torch import nn
from transformers import AutoModel

from rqakit.models import CrossEncoder, DualEncoder, cpu_dropout
from rqakit.models.backbone import tiny_backbone_dir

pytestmark = pytest.mark.usefixtures("tiny_cache")   # the tiny backbone, built afresh from code


def test_the_law_of_dropout_keep_with_1_minus_p_and_scale_by_its_inverse():
    x = torch.ones(1_000_000, requires_grad=True)
    torch.manual_seed(0)
    y = cpu_dropout.cpu_dropout(x, 0.1)
    kept = y != 0
    assert abs(1 - kept.float().mean().item() - 0.1) < 0.002
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.9))
    y.sum().backward()
    assert torch.equal(x.grad, kept.float() / 0.9)          # the gradient flows through kept units only
    assert cpu_dropout.cpu_dropout(x, 0.0) is x
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        cpu_dropout.cpu_dropout(x, 1.0)


def test_torch_seed_fixes_the_mask_and_each_call_draws_a_new_one():
    x = torch.ones(4096)
    torch.manual_seed(7)
    a, b = cpu_dropout.cpu_dropout(x, 0.5), cpu_dropout.cpu_dropout(x, 0.5)
    torch.manual_seed(7)
    assert torch.equal(a, cpu_dropout.cpu_dropout(x, 0.5))
    assert not torch.equal(a, b)


def test_install_swaps_every_dropout_and_the_attention_and_saves_a_plain_model(tmp_path):
    model = AutoModel.from_pretrained(str(tiny_backbone_dir()))
    assert model.config._attn_implementation == "sdpa"
    cpu_dropout.install(model)
    assert not any(type(m) is nn.Dropout for m in model.modules())
    assert any(isinstance(m, cpu_dropout.Dropout) for m in model.modules())
    assert model.config._attn_implementation == cpu_dropout.ATTENTION
    model.save_pretrained(tmp_path)
    assert cpu_dropout.ATTENTION not in (tmp_path / "config.json").read_text()
    assert json.loads((tmp_path / "config.json").read_text()).get("_attn_implementation") is None


def test_inference_is_bit_identical_to_transformers_sdpa():
    plain = AutoModel.from_pretrained(str(tiny_backbone_dir())).eval()
    ours = cpu_dropout.install(AutoModel.from_pretrained(str(tiny_backbone_dir()))).eval()
    ids = torch.randint(1000, 2000, (3, 12))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    with torch.no_grad():
        assert torch.equal(plain(input_ids=ids, attention_mask=mask).last_hidden_state,
                           ours(input_ids=ids, attention_mask=mask).last_hidden_state)


def test_training_attention_never_reads_a_padded_key_and_is_unbiased():
    torch.manual_seed(0)
    q, k = torch.randn(2, 2, 5, 4), torch.randn(2, 2, 5, 4)
    v = torch.randn(2, 2, 5, 4)
    attend = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    attend[1, ..., 3:] = False                                # sequence 1: keys 3 and 4 are padding
    v_poisoned = v.clone()
    v_poisoned[1, :, 3:] = 1e6
    module = nn.Module()
    out, _ = cpu_dropout.attention(module, q, k, v_poisoned, attend, dropout=0.1, scaling=0.5)
    assert out.shape == (2, 5, 2, 4) and out.abs().max() < 1e3
    # the mean over many masks is attention without dropout (inverted scaling)
    plain, _ = cpu_dropout.attention(module, q, k, v, attend, dropout=0.0, scaling=0.5)
    mean = torch.stack([cpu_dropout.attention(module, q, k, v, attend, dropout=0.1, scaling=0.5)[0]
                        for _ in range(3000)]).mean(0)
    assert torch.allclose(mean, plain, atol=0.05)
    reference = torch.softmax((q @ k.transpose(2, 3)) * 0.5 + torch.where(attend, 0.0, float("-inf")), -1) @ v
    assert torch.allclose(plain, reference.transpose(1, 2), atol=1e-6)


def test_the_kit_models_train_with_it_and_infer_as_before():
    de = DualEncoder.from_backbone("tiny")
    ce = CrossEncoder.from_backbone("tiny")
    for model in (de, ce):
        assert not any(type(m) is nn.Dropout for m in model.modules())
    assert isinstance(ce.dropout, cpu_dropout.Dropout)
    de.train()
    torch.manual_seed(3)
    a = de.encode_queries(de.tokenize_queries(["alpha beta gamma"]))
    torch.manual_seed(3)
    assert torch.equal(a, de.encode_queries(de.tokenize_queries(["alpha beta gamma"])))


def test_training_outputs_follow_the_law_of_torchs_dropout():
    """Over many masks, a tiny BERT in train mode gives outputs of the same mean and spread with the
    kit's masks as with torch's: element by element, the difference of the means is N(0, 1) noise."""
    theirs = AutoModel.from_pretrained(str(tiny_backbone_dir())).train()
    ours = cpu_dropout.install(AutoModel.from_pretrained(str(tiny_backbone_dir()))).train()
    ids = torch.randint(1000, 2000, (2, 12))
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    n = 600

    def draws(model):
        with torch.no_grad():
            return torch.stack([model(input_ids=ids, attention_mask=mask).last_hidden_state for _ in range(n)])
    torch.manual_seed(0)
    a, b = draws(theirs), draws(ours)
    z = (a.mean(0) - b.mean(0)) / ((a.var(0) + b.var(0)) / n).sqrt()
    assert 0.7 < z.abs().mean() < 0.9                 # E|z| = 0.80 for N(0, 1)
    assert (z.abs() > 4).float().mean() < 0.005
    ratio = (b.std(0) / a.std(0)).mean()
    assert 0.97 < ratio < 1.03


def test_runtime_dropout_masks_torch_trains_with_torchs_own_masks_bit_for_bit(tmp_path):
    """`runtime.dropout_masks=torch` gives an installed model exactly a plain transformers model's
    training outputs (the same seed, the same masks); the kit's masks give others."""
    from rqakit.config import load_config
    from rqakit.errors import RqaError
    from rqakit.stages import Workspace

    theirs = AutoModel.from_pretrained(str(tiny_backbone_dir())).train()
    ours = cpu_dropout.install(AutoModel.from_pretrained(str(tiny_backbone_dir()))).train()
    ids = torch.randint(1000, 2000, (2, 12))

    def forward(model):
        torch.manual_seed(5)
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state

    try:
        Workspace(load_config("toy", {"runtime.dropout_masks": "torch", "runtime.workdir": str(tmp_path)})).apply()
        assert torch.equal(forward(ours), forward(theirs))
        Workspace(load_config("toy", {"runtime.workdir": str(tmp_path)})).apply()  # the default: the kit's
        assert not torch.equal(forward(ours), forward(theirs))
    finally:
        cpu_dropout.use(True)
    with pytest.raises(RqaError, match="runtime.dropout_masks = 'numpy'; choose one of: kit, torch"):
        load_config("toy", {"runtime.dropout_masks": "numpy"})
