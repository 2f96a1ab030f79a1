"""The training loop: resume is bit-identical, same seed same weights, DDP equals one process,
and cross-batch negatives line up with their own queries."""
import functools
import math
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from rqakit import runtime, training
from rqakit.errors import RqaError
from rqakit.losses import cross_batch_listwise_loss, in_batch_listwise_loss
from rqakit.models import CrossEncoder, DualEncoder
from rqakit.objectives import JointDistillation, ListExample, ListwiseReranker, PointwiseReranker
from rqakit.runtime import gather_with_grad
from rqakit.training import OptimSettings, make_optimizer, make_plan, param_groups, train
from rqakit.types import Doc

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi".split()


def lists(n=8, m=3):
    out = []
    for i in range(n):
        docs = [Doc(f"d{i}-{j}", WORDS[(i + j) % 16], " ".join(WORDS[(i * j + k) % 16] for k in range(6))) for j in range(m)]
        out.append(ListExample(f"{WORDS[i % 16]} {WORDS[(i + 3) % 16]}", docs))
    return out


def joint_model(dropout: bool = True, static: bool = False):
    torch.manual_seed(0)
    de = DualEncoder.from_backbone("tiny", query_max_length=16, passage_max_length=24)
    ce = CrossEncoder.from_backbone("tiny", max_length=32)
    if not dropout:
        for module in list(de.modules()) + list(ce.modules()):
            if isinstance(module, nn.Dropout):
                module.p = 0.0
    return JointDistillation(de.train(), ce.train(), static=static)


def run(model, examples, *, steps_plan, tmp=None, stop_after=None, every=1, optim=None):
    plan = [[[examples[i] for i in mb] for mb in step] for step in steps_plan]
    return train(model, plan, model.collate, optim=optim or OptimSettings(lr=1e-3), precision=False,
                 checkpoint_dir=tmp, checkpoint_every=every, stop_after=stop_after, seed=3, log=lambda *_: None)


def state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_plan_is_deterministic_and_drops_the_tail():
    a = make_plan(10, batch_size=4, micro_batch_size=2, epochs=2, seed=5)
    assert a == make_plan(10, batch_size=4, micro_batch_size=2, epochs=2, seed=5)
    assert len(a) == 4 and all(len(step) == 2 and all(len(mb) == 2 for mb in step) for step in a)
    assert a != make_plan(10, batch_size=4, micro_batch_size=2, epochs=2, seed=6)
    assert len(make_plan(10, batch_size=4, micro_batch_size=2, epochs=0.5, seed=5)) == 1
    with pytest.raises(RqaError, match="cannot fill one batch"):
        make_plan(3, batch_size=4, micro_batch_size=2, epochs=1, seed=0)


def test_no_weight_decay_on_bias_and_layernorm():
    model = joint_model()
    decay, no_decay = param_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all("bias" not in names[id(p)] and "LayerNorm" not in names[id(p)] for p in decay["params"])
    assert any("LayerNorm" in names[id(p)] for p in no_decay["params"])
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 0.01


def test_adamw_is_fused_on_cpu_and_takes_the_reference_update():
    """The fused kernel is a speed choice only: fed the same gradients for a few steps, with weight
    decay on one group and none on the other, it reaches torch's reference (for-loop) AdamW's
    weights up to float rounding."""
    def model():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(16, 8), nn.LayerNorm(8))
    fused_model, loop_model = model(), model()
    fused, _ = training.make_optimizer(fused_model, OptimSettings(lr=1e-2, weight_decay=0.1), total_steps=5)
    assert all(g["fused"] for g in fused.param_groups)
    loop = torch.optim.AdamW(param_groups(loop_model, 0.1), lr=1e-2, foreach=False)
    start = state(fused_model)
    for _ in range(5):
        grads = [torch.randn_like(p) for p in fused_model.parameters()]
        for m, opt in ((fused_model, fused), (loop_model, loop)):
            for p, g in zip(m.parameters(), grads):
                p.grad = g.clone()
            opt.step()
    a, b = state(fused_model), state(loop_model)
    assert all((a[k] - start[k]).abs().max() > 1e-2 for k in a)      # every tensor moved
    assert all(torch.allclose(a[k], b[k], rtol=0, atol=1e-6) for k in a)


def test_resuming_keeps_the_fused_kernel_whatever_the_checkpoint_used():
    model = joint_model()
    loop = torch.optim.AdamW(param_groups(model, 0.01), lr=1e-3, foreach=False)
    model(model.collate(lists()[:2]))["loss"].backward()
    loop.step()
    fused, _ = training.make_optimizer(model, OptimSettings(lr=1e-3), total_steps=4)
    training.load_optimizer_state(fused, loop.state_dict())
    assert all(g["fused"] for g in fused.param_groups)
    assert torch.equal(fused.state_dict()["state"][0]["exp_avg"], loop.state_dict()["state"][0]["exp_avg"])


def test_killed_run_resumes_to_bit_identical_weights(tmp_path):
    examples = lists()
    plan = make_plan(len(examples), batch_size=4, micro_batch_size=2, epochs=2, seed=1)  # 4 steps
    full = joint_model()
    run(full, examples, steps_plan=plan, tmp=tmp_path / "full")
    first = joint_model()
    result = run(first, examples, steps_plan=plan, tmp=tmp_path / "killed", stop_after=2)
    assert result.steps == 2
    resumed = joint_model()
    again = run(resumed, examples, steps_plan=plan, tmp=tmp_path / "killed")
    assert again.resumed_from == 2 and len(again.history) == 4
    a, b = state(full), state(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the stop really interrupted training: the weights after 2 steps differ from the final ones
    mid = state(first)
    assert any(not torch.equal(mid[k], a[k]) for k in a)


def test_a_corrupt_checkpoint_falls_back_to_the_previous_one_with_a_warning(tmp_path):
    examples = lists()
    plan = make_plan(len(examples), batch_size=4, micro_batch_size=2, epochs=2, seed=1)  # 4 steps
    full = joint_model()
    run(full, examples, steps_plan=plan, tmp=tmp_path / "full")
    folder = tmp_path / "killed"
    run(joint_model(), examples, steps_plan=plan, tmp=folder, stop_after=3)
    # the previous checkpoint stays on disk, so there is one to fall back to
    assert [p.name for p in sorted(folder.glob("step-*"))] == ["step-0000002", "step-0000003"]
    (folder / "step-0000003" / "state.pt").write_bytes(b"\x80\x04 not a checkpoint")
    warnings, resumed = [], joint_model()
    plan_examples = [[[examples[i] for i in mb] for mb in step] for step in plan]
    again = train(resumed, plan_examples, resumed.collate, optim=OptimSettings(lr=1e-3), precision=False,
                  checkpoint_dir=folder, checkpoint_every=1, seed=3, log=warnings.append)
    assert again.resumed_from == 2
    assert any(str(folder / "step-0000003" / "state.pt") in w and "falling back" in w for w in warnings)
    a, b = state(full), state(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_no_readable_checkpoint_starts_fresh_with_a_warning(tmp_path):
    examples = lists()
    plan = make_plan(len(examples), batch_size=4, micro_batch_size=2, epochs=1, seed=1)  # 2 steps
    full = joint_model()
    run(full, examples, steps_plan=plan)
    folder = tmp_path / "ckpt"
    run(joint_model(), examples, steps_plan=plan, tmp=folder, stop_after=1)
    for ckpt in folder.glob("step-*"):
        (ckpt / "state.pt").write_bytes(b"")
    warnings, fresh = [], joint_model()
    plan_examples = [[[examples[i] for i in mb] for mb in step] for step in plan]
    again = train(fresh, plan_examples, fresh.collate, optim=OptimSettings(lr=1e-3), precision=False,
                  checkpoint_dir=folder, checkpoint_every=1, seed=3, log=warnings.append)
    assert again.resumed_from == 0 and any("starts from step 0" in w for w in warnings)
    a, b = state(full), state(fresh)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_same_weights_and_other_seed_differs():
    examples = lists()
    plan = make_plan(len(examples), batch_size=4, micro_batch_size=2, epochs=1, seed=1)
    a, b = joint_model(), joint_model()
    run(a, examples, steps_plan=plan)
    run(b, examples, steps_plan=plan)
    sa, sb = state(a), state(b)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    c = joint_model()
    run(c, examples, steps_plan=make_plan(len(examples), batch_size=4, micro_batch_size=2, epochs=1, seed=2))
    sc = state(c)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


def test_static_distillation_leaves_the_reranker_untouched():
    examples = [ListExample(e.query, e.docs, [2.0, 0.0, -1.0]) for e in lists()]
    model = joint_model(static=True)
    assert model.ce is None
    before = state(model)
    run(model, examples, steps_plan=make_plan(len(examples), batch_size=4, micro_batch_size=2, epochs=1, seed=1))
    after = state(model)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("de."))


# ------------------------------------------------------------------------------ two processes
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, fn, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        out[rank] = fn(rank)
    finally:
        dist.destroy_process_group()


def spawn(fn, world=2):
    from rqakit.models.backbone import tiny_backbone_dir

    tiny_backbone_dir()   # built once here, not raced by the processes
    manager = mp.Manager()
    out = manager.dict()
    mp.spawn(_worker, args=(world, _free_port(), fn, out), nprocs=world, join=True)
    return dict(out)


def _stages_on_ranks(rank, root):
    """Two stages under two processes: one rank 0 alone builds, one every process builds."""
    import time

    from rqakit import artifacts

    artifacts.POLL_S = 0.05
    built = []

    def build(tmp, name):
        built.append(name)
        (tmp / "rank.txt").write_text(str(rank))
        time.sleep(0.5 if rank == 0 else 0.0)   # rank 0 still works while the other is done
        return {}

    out = {}
    for name, every_rank in (("alone", False), ("both", True)):
        folder = artifacts.run_stage(Path(root) / name / "h", "h", lambda tmp, n=name: build(tmp, n),
                                     every_rank=every_rank, log=lambda *_: None)
        out[name] = (folder / "rank.txt").read_text()   # published, whichever process asks
    return {"built": built, **out}


def _shared_ranking_on_ranks(rank, root):
    from rqakit import artifacts
    from rqakit.stages.common import shared_ranking

    artifacts.POLL_S = 0.05
    computed, threads = [], torch.get_num_threads()

    def compute():
        computed.append(torch.get_num_threads())   # rank 0 on every core while the others wait
        return {"q2": ["d3", "d1", "d3x"], "q1": ["d1"], "q3": []}

    ranking = shared_ranking(Path(root) / "work" / "bm25-train.parquet", compute)
    return {"ranking": ranking, "computed": computed, "threads_after": torch.get_num_threads() == threads}


def test_rank_0_computes_a_ranking_once_and_every_process_reads_the_same(tmp_path):
    results = spawn(functools.partial(_shared_ranking_on_ranks, root=str(tmp_path)))
    expected = {"q2": ["d3", "d1", "d3x"], "q1": ["d1"], "q3": []}
    assert results[0]["ranking"] == expected and results[1]["ranking"] == expected
    assert list(results[1]["ranking"]) == ["q2", "q1", "q3"]          # the file keeps the queries' order
    assert len(results[0]["computed"]) == 1 and results[1]["computed"] == []
    assert results[0]["computed"][0] == len(os.sched_getaffinity(0)) and results[0]["threads_after"]


def test_a_stage_rank_0_builds_alone_is_built_once_and_every_process_waits_for_it(tmp_path):
    results = spawn(functools.partial(_stages_on_ranks, root=str(tmp_path)))
    assert results[0]["built"] == ["alone", "both"] and results[1]["built"] == ["both"]
    assert all(r["alone"] == "0" and r["both"] == "0" for r in results.values())   # rank 0's folder


# Plain SGD: Adam would hide a wrongly scaled loss and amplify float noise in zero-gradient
# parameters (attention key biases, the CE head bias under a shift-invariant softmax).
SGD = OptimSettings(lr=0.5, optimizer="sgd", weight_decay=0.0)


def _ddp_train(rank):
    examples = lists()
    plan = make_plan(len(examples), batch_size=4, micro_batch_size=1, epochs=1, seed=1)  # 2 steps x 4 micro
    model = joint_model(dropout=False)
    run(model, examples, steps_plan=plan, optim=SGD)
    return state(model)


def test_two_processes_reach_the_parameters_of_one(tmp_path):
    states = spawn(_ddp_train)
    examples = lists()
    plan = make_plan(len(examples), batch_size=4, micro_batch_size=1, epochs=1, seed=1)
    single = joint_model(dropout=False)
    before = state(single)
    run(single, examples, steps_plan=plan, optim=SGD)
    one = state(single)
    for rank in (0, 1):
        worst = max((states[rank][k] - one[k]).abs().max().item() for k in one)
        bad = [k for k in one if not torch.allclose(states[rank][k], one[k], atol=1e-5, rtol=1e-4)]
        assert not bad, (rank, worst, bad[:5])
    assert any(not torch.allclose(before[k], one[k]) for k in one)  # training moved the weights


def _cross_batch(rank):
    torch.manual_seed(7)
    q = torch.randn(4, 5)      # the global batch: 4 queries, 2 per process
    p = torch.randn(4, 2, 5)   # their lists: positive + 1 hard negative
    mine = slice(2 * rank, 2 * rank + 2)
    q_local, p_local = q[mine].clone(), p[mine].clone().requires_grad_(True)
    p_all, offset = gather_with_grad(p_local)
    loss = cross_batch_listwise_loss(q_local, p_all, offset)
    loss.backward()
    return {"offset": offset, "loss": float(loss), "grad": p_local.grad.clone(), "gathered": p_all.detach().clone()}


def test_cross_batch_negatives_line_up_with_their_queries():
    out = spawn(_cross_batch)
    torch.manual_seed(7)
    q, p = torch.randn(4, 5), torch.randn(4, 2, 5)
    assert out[0]["offset"] == 0 and out[1]["offset"] == 2
    assert torch.equal(out[0]["gathered"], p) and torch.equal(out[1]["gathered"], p)
    # The mean of the two processes' losses is the one-process in-batch loss over all 4 queries:
    # each query's target is its own positive in the gathered matrix, not another process's.
    expected = float(in_batch_listwise_loss(q, p))
    assert abs((out[0]["loss"] + out[1]["loss"]) / 2 - expected) < 1e-5
    # Gradients reach the passages a process encoded, from its own queries' loss.
    assert out[0]["grad"].abs().sum() > 0 and out[1]["grad"].abs().sum() > 0


def test_the_joint_in_batch_term_is_the_warm_up_loss_with_its_temperature():
    """joint.in_batch adds InBatchRetriever's loss: inner products over the temperature, every
    passage of the batch a negative (by hand from the towers' embeddings)."""
    torch.manual_seed(0)
    de = DualEncoder.from_backbone("tiny", query_max_length=16, passage_max_length=24, normalize=True,
                                   temperature=0.05)
    ce = CrossEncoder.from_backbone("tiny", max_length=32)
    model = JointDistillation(de.eval(), ce.eval(), in_batch=True)
    examples = lists(n=3, m=2)
    batch = model.collate(examples)
    with torch.no_grad():
        out = model(batch)
        q = de.encode_queries(batch["q"]).float()                          # (3, d) unit vectors
        p = de.encode_passages(batch["p"]).float().view(3, 2, -1)          # (3, 2, d)
    scores = (q @ p.reshape(6, -1).T) / 0.05                               # (3, 6)
    expected = -torch.log_softmax(scores, dim=-1)[torch.arange(3), torch.tensor([0, 2, 4])].mean()
    assert abs(float(out["in_batch"]) - float(expected)) < 1e-5
    unscaled = -torch.log_softmax(q @ p.reshape(6, -1).T, dim=-1)[torch.arange(3), torch.tensor([0, 2, 4])].mean()
    assert abs(float(expected) - float(unscaled)) > 0.01  # the temperature matters here


# -- RocketQA step 2 as v1 trained it, and fp16 with a loss scaler ------------------------------

def test_pointwise_warm_reranker_is_binary_cross_entropy_over_every_pair():
    torch.manual_seed(0)
    ce = CrossEncoder.from_backbone("tiny", max_length=32).eval()   # eval: no dropout, same logits twice
    batch = PointwiseReranker(ce).collate(lists(n=2, m=3))
    s = ce(batch["pairs"]).view(2, 3)                                 # (B, m), positive at index 0
    by_hand = -(torch.log(torch.sigmoid(s[:, 0])).sum() + torch.log(1 - torch.sigmoid(s[:, 1:])).sum()) / 6
    assert torch.allclose(PointwiseReranker(ce)(batch)["loss"], by_hand, atol=1e-6)
    listwise = -torch.log_softmax(s, dim=-1)[:, 0].mean()
    assert torch.allclose(ListwiseReranker(ce)(batch)["loss"], listwise, atol=1e-6)


def test_fp16_where_a_gpu_lacks_bf16_and_only_then_a_loss_scaler(monkeypatch):
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    monkeypatch.setattr(runtime, "_precision", "auto")   # whatever profile an earlier test applied
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)   # a V100 or T4
    assert runtime.compute_dtype(cuda) == torch.float16
    assert isinstance(runtime.loss_scaler(cuda), torch.amp.GradScaler)
    assert runtime.loss_scaler(cuda, enabled=False) is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)    # A100, H100
    assert runtime.compute_dtype(cuda) == torch.bfloat16 and runtime.loss_scaler(cuda) is None
    monkeypatch.setattr(runtime, "cpu_supports_bf16", lambda: False)
    assert runtime.compute_dtype(cpu) == torch.float32 and runtime.loss_scaler(cpu) is None


def test_the_scaled_loop_unscales_before_clipping_and_takes_the_unscaled_step(monkeypatch, tmp_path):
    """With a power-of-two scale, scaling then unscaling is exact: the loop with a scaler must reach
    the weights of the loop without one. SGD (no per-parameter normalisation) and an active clip
    make a missing or misplaced unscale show."""
    examples = lists(n=4, m=3)
    plan = make_plan(4, batch_size=2, micro_batch_size=1, epochs=1, seed=0)
    sgd = OptimSettings(lr=1e-2, optimizer="sgd", clip=1.0)
    plain = joint_model(dropout=False)
    run(plain, examples, steps_plan=plan, optim=sgd)
    scalers = []

    def scaler(device, enabled=True):
        scalers.append(torch.amp.GradScaler("cpu", init_scale=2.0 ** 12))
        return scalers[-1]

    monkeypatch.setattr(training, "loss_scaler", scaler)
    scaled = joint_model(dropout=False)
    result = run(scaled, examples, steps_plan=plan, tmp=tmp_path, optim=sgd)
    assert scalers and scalers[0].get_scale() == 2.0 ** 12            # no overflow, no skipped step
    assert any(h["grad_norm"] > 1.0 for h in result.history)           # the clip was active
    a, b = state(plain), state(scaled)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    saved = torch.load(next(tmp_path.glob("step-*")) / "state.pt", weights_only=True)
    assert saved["scaler"]["scale"] == 2.0 ** 12


def test_a_tower_of_its_own_gets_its_lr_and_warm_up_and_the_rest_keeps_theirs():
    """OptimSettings.towers: the re-ranker's parameters leave the shared groups for their own,
    with their own lr ramped over their own warm-up; the retriever's schedule is untouched."""
    model = joint_model()
    own = OptimSettings(lr=1e-3, towers={"ce": {"lr": 1e-4, "warmup_ratio": 0.5}})
    optimizer, scheduler = make_optimizer(model, own, total_steps=4)
    ce_ids = {id(p) for p in model.ce.parameters()}
    shared, towers = optimizer.param_groups[:2], optimizer.param_groups[2:]
    assert all(id(p) not in ce_ids for g in shared for p in g["params"])
    assert {id(p) for g in towers for p in g["params"]} == {id(p) for p in model.ce.parameters() if p.requires_grad}
    seen = []
    for _ in range(4):
        seen.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    assert [round(s[0], 9) for s in seen] == [1e-3] * 4                     # constant, no warm-up
    assert [round(s[2], 9) for s in seen] == [5e-5, 1e-4, 1e-4, 1e-4]       # 2 warm-up steps, then its lr
    plain_groups = make_optimizer(joint_model(), OptimSettings(lr=1e-3), 4)[0].param_groups
    assert len(plain_groups) == 2                                           # no towers: the groups as before


def test_the_history_names_each_towers_gradient_norm_before_the_clip():
    """grad_norm_de and grad_norm_ce are the towers' pre-clip norms; the global norm the clip
    reads is the root of their squares."""
    examples = lists(n=4, m=3)
    plan = make_plan(4, batch_size=2, micro_batch_size=1, epochs=1, seed=0)
    result = run(joint_model(), examples, steps_plan=plan, optim=OptimSettings(lr=1e-3, clip=0.01))
    for h in result.history:
        assert h["grad_norm"] == pytest.approx(math.hypot(h["grad_norm_de"], h["grad_norm_ce"]), rel=1e-4)
    static = run(joint_model(static=True), [ListExample(e.query, e.docs, [1.0, 0.0, -1.0]) for e in examples],
                 steps_plan=plan)
    assert all("grad_norm_ce" not in h for h in static.history)            # a frozen teacher has no gradient


def test_a_global_clip_scales_both_towers_by_one_factor_and_a_per_tower_clip_each_by_its_own():
    """Gradients of norm 0.6 (retriever) and 8.0 (re-ranker), clip 1: one global norm of 8.02
    shrinks the retriever's to 0.6 / 8.02; clipped apart, the retriever keeps its 0.6 and the
    re-ranker is cut to 1. Both report the global norm before the clip (float32 sums of a million
    equal terms: 1e-3)."""
    model = joint_model()

    def set_grads():
        for tower, norm in (("de", 0.6), ("ce", 8.0)):
            params = [p for p in getattr(model, tower).parameters() if p.requires_grad]
            size = sum(p.numel() for p in params)
            for p in params:
                p.grad = torch.full_like(p, norm / math.sqrt(size))

    def norms():
        return [float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in getattr(model, t).parameters()
                                                            if p.grad is not None]))) for t in ("de", "ce")]

    trainable = [p for p in model.parameters() if p.requires_grad]
    total = math.hypot(0.6, 8.0)
    set_grads()
    assert training.clip_gradients(model, trainable, OptimSettings(clip=1.0)) == pytest.approx(total, rel=1e-3)
    assert norms() == pytest.approx([0.6 / total, 8.0 / total], rel=1e-3)
    set_grads()
    assert training.clip_gradients(model, trainable, OptimSettings(clip=1.0, clip_per_tower=True)) == pytest.approx(
        total, rel=1e-3)
    assert norms() == pytest.approx([0.6, 1.0], rel=1e-3)
    assert training.clip_gradients(model, trainable, OptimSettings(clip=0.0)) is None


def test_a_frozen_teacher_in_train_mode_gets_no_update_and_varies_with_dropout():
    """teacher_dropout: the static teacher rescored at each step with dropout on (other scores on
    the same list), never updated, and no teacher scores needed in the examples."""
    torch.manual_seed(0)
    de = DualEncoder.from_backbone("tiny", query_max_length=16, passage_max_length=24)
    ce = CrossEncoder.from_backbone("tiny", max_length=32)
    model = JointDistillation(de.train(), ce, static=True, teacher_dropout=True)
    before = {k: v.clone() for k, v in ce.state_dict().items()}
    examples = lists(n=4, m=3)
    batch = model.collate(examples[:2])
    assert "pairs" in batch and "teacher" not in batch
    model.train()
    with torch.no_grad():
        a, b = ce(batch["pairs"]), ce(batch["pairs"])
    assert not torch.allclose(a, b)                                          # dropout is on
    plan = make_plan(4, batch_size=2, micro_batch_size=1, epochs=1, seed=0)
    run(model, examples, steps_plan=plan)
    assert all(torch.equal(before[k], v) for k, v in ce.state_dict().items())
    assert all(not p.requires_grad for p in ce.parameters())


class Payload:
    """An object whose unpickling would run code: a checkpoint must never be read that way."""
    ran = []

    def __reduce__(self):
        return (Payload.ran.append, ("executed",))


def test_a_checkpoint_that_would_run_code_is_refused_and_the_run_falls_back(tmp_path):
    examples = lists()
    plan = make_plan(len(examples), batch_size=4, micro_batch_size=2, epochs=2, seed=1)  # 4 steps
    folder = tmp_path / "ckpt"
    run(joint_model(), examples, steps_plan=plan, tmp=folder, stop_after=3)
    saved = torch.load(folder / "step-0000003" / "state.pt", weights_only=True)   # tensors and plain types only
    torch.save({**saved, "history": [Payload()]}, folder / "step-0000003" / "state.pt")
    warnings, resumed = [], joint_model()
    plan_examples = [[[examples[i] for i in mb] for mb in step] for step in plan]
    again = train(resumed, plan_examples, resumed.collate, optim=OptimSettings(lr=1e-3), precision=False,
                  checkpoint_dir=folder, checkpoint_every=1, seed=3, log=warnings.append)
    assert Payload.ran == [] and again.resumed_from == 2
    assert any("step-0000003" in w and "cannot be read" in w for w in warnings)
