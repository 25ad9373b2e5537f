"""Full fine-tuning, fewer layers (last-k, CKA-guided pruning) and CapVector on a tiny VLA."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from policies.adapters import get_method
from policies.adapters.base import adapter_state_dict, count_parameters, load_adapter_state
from policies.adapters.capvector import (AuxiliaryHead, ao_loss, auxiliary_loss, capability_vector, future_positions,
                                         load_vector, lora_orthogonality_loss, merge_vector, orthogonality_loss,
                                         save_vector)
from policies.adapters.layers.clp import layer_similarities, linear_cka, plan_pruning, pruned_config
from policies.adapters.lora import LoraLinear
from policies.data import DemoSet
from policies.vla import VLA, VLAConfig, build_tokenizer, instruction_corpus

TINY = dict(image_size=32, stem_channels=(8, 16), feature_grid=4, d_model=32, n_heads=2, n_layers=4,
            vision_layers=2, expert_layers=2, chunk=4, flow_steps=4)
INSTRUCTIONS = ("put the red cube in the bowl", "pick up the blue cube")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(instruction_corpus())


def tiny(tokenizer, seed: int = 0) -> VLA:
    torch.manual_seed(seed)
    return VLA(VLAConfig(**TINY), tokenizer)


def batch(n: int = 8, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 255, (n, 32, 32, 3)).astype(np.uint8)
    return {"agentview": torch.from_numpy(images), "wrist": torch.from_numpy(images[:, ::-1].copy()),
            "state": torch.from_numpy(rng.normal(size=(n, 8)).astype(np.float32)),
            "instruction": [INSTRUCTIONS[i % 2] for i in range(n)],
            "actions": torch.from_numpy(rng.uniform(-1, 1, (n, 4, 7)).astype(np.float32)),
            "future_position": torch.from_numpy(rng.normal(size=(n, 3)).astype(np.float32))}


def trainable(model: nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def steps(model: nn.Module, n: int = 2) -> None:
    """AdamW over every parameter, weight decay on: a frozen one could only move through a gradient."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    for i in range(n):
        opt.zero_grad()
        model.loss(batch(seed=i))[0].backward()
        opt.step()


# ------------------------------------------------------------------------------ full, last-k
def test_full_trains_everything(tokenizer):
    method = get_method("full")
    model = method.apply(tiny(tokenizer), method.config({}))
    counts = count_parameters(model)
    assert counts["trainable"] == counts["total"] and not method.can_merge
    assert set(adapter_state_dict(model)) == {n for n, _ in model.named_parameters()}


def test_last_k_releases_the_last_blocks_and_what_follows_them(tokenizer):
    method = get_method("last_k")
    model = method.apply(tiny(tokenizer), method.config({"layers": 1}))
    names = {n for n, _ in model.named_parameters()}
    prefixes = ("vision.layers.1.", "fusion.layers.3.", "action_expert.layers.1.", "fusion.norm.",
                "action_expert.norm.", "action_expert.head.")
    expected = {n for n in names if n.startswith(prefixes)} | {"vision.camera_embed"}
    assert trainable(model) == expected
    model = method.apply(tiny(tokenizer), method.config({"layers": 3, "groups": ["fusion"], "trainable": ["language\\..*"]}))
    assert {n.split(".")[2] for n in trainable(model) if n.startswith("fusion.layers.")} == {"1", "2", "3"}
    assert not any(n.startswith(("vision.", "action_expert.")) for n in trainable(model))
    assert {n for n in trainable(model) if n.startswith("language.")} == {"language.embed.weight", "language.pos"}


def test_last_k_frozen_parameters_do_not_move(tokenizer):
    method = get_method("last_k")
    model = method.apply(tiny(tokenizer), method.config({"layers": 2, "groups": ["fusion", "action_expert"]}))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    steps(model)
    released = trainable(model)
    for name, param in model.named_parameters():
        assert (not torch.equal(param, before[name])) == (name in released), name


def test_last_k_bad_options(tokenizer):
    method = get_method("last_k")
    with pytest.raises(ValueError, match="layers") as err:
        method.config({"layers": 0})
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"layers=3.*1\.\.2"):  # vision and the expert have 2 blocks
        method.apply(tiny(tokenizer), method.config({"layers": 3}))
    with pytest.raises(ValueError, match=r"layers=5.*1\.\.4.*fusion"):
        method.apply(tiny(tokenizer), method.config({"layers": 5, "groups": ["fusion"]}))
    with pytest.raises(ValueError, match="groups.*language"):
        method.config({"groups": ["language"]})


# ------------------------------------------------------------------------------------ CKA
def test_linear_cka_properties():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, 6, generator=gen)
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=gen))
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, x @ q) == pytest.approx(1.0)  # invariant to orthogonal maps
    assert linear_cka(x, 3.5 * x + 2.0) == pytest.approx(1.0)  # ... to isotropic scale and shifts
    assert linear_cka(torch.randn(2000, 8, generator=gen), torch.randn(2000, 8, generator=gen)) < 0.05
    # by hand: centred x = [-1, 0, 1], y = [0, -1, 1]: ||y^T x||^2 = 1, ||x^T x|| ||y^T y|| = 2 * 2
    assert linear_cka(torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([[1.0], [0.0], [2.0]])) == pytest.approx(0.25)
    assert 0.0 <= linear_cka(x, torch.randn(200, 3, generator=gen)) <= 1.0


def test_plan_pruning_by_hand():
    s = [0.5, 0.95, 0.97, 0.99, 0.6, 0.93, 0.98, 0.7]
    # runs of s >= 0.9: [1, 2, 3] and [5, 6]; candidates 2 (0.97), 3 (0.99), 6 (0.98); budget floor(0.5 * 8) = 4
    assert plan_pruning(s, tau=0.9, fraction=0.5) == [2, 3, 6]
    assert plan_pruning(s, tau=0.9, fraction=0.25) == [3, 6]  # budget 2: the two most redundant
    assert plan_pruning(s, tau=0.96, fraction=0.5) == [3]  # runs [2, 3] and [6]: only 3 is not first
    assert plan_pruning([0.99, 0.99], tau=0.9, fraction=0.5) == [1]  # block 0 is always kept
    assert plan_pruning([0.99], tau=0.9, fraction=0.5) == []  # never all layers
    assert plan_pruning([0.2, 0.3, 0.4], tau=0.9, fraction=0.5) == []


# ------------------------------------------------------------------------------------ CLP
def test_clp_prunes_the_planned_blocks_and_reapplies_without_calibration(tokenizer):
    method = get_method("clp")
    base = tiny(tokenizer)
    similarities = layer_similarities(base, batch(), ("fusion", "action_expert"))
    assert [len(similarities[g]) for g in ("fusion", "action_expert")] == [4, 2]
    assert all(0.0 <= s <= 1.0 for v in similarities.values() for s in v)
    config = method.config({})
    model = method.apply(tiny(tokenizer), config, calibration=batch())
    assert config.removed == {g: plan_pruning(s, 0.9, 0.5) for g, s in similarities.items()}
    assert config.removed["fusion"] and len(config.removed["fusion"]) <= 2  # a fresh model is very redundant
    kept = [i for i in range(4) if i not in config.removed["fusion"]]
    assert len(model.fusion.layers) == len(kept)
    for new, old in enumerate(kept):  # the surviving blocks are the original ones, in order
        assert torch.equal(model.fusion.layers[new].attn.q_proj.weight, base.fusion.layers[old].attn.q_proj.weight)
    assert trainable(model) == {n for n, _ in model.named_parameters()}
    loss, _ = model.loss(batch())
    loss.backward()
    assert model.eval().predict(batch()).shape == (8, 4, 7)
    # reload: a config from JSON with the recorded plan, no calibration, then the adapter state
    again = method.config(config.to_dict())
    reloaded = method.apply(tiny(tokenizer, seed=1), again)
    load_adapter_state(reloaded, adapter_state_dict(model), "test")
    assert torch.equal(reloaded.eval().predict(batch()), model.predict(batch()))
    plain = VLA(pruned_config(model.config, config.removed), tokenizer)  # a plain checkpoint of the pruned model
    assert {n: v.shape for n, v in plain.state_dict().items()} == {n: v.shape for n, v in model.state_dict().items()}


def test_clp_bad_options(tokenizer):
    method = get_method("clp")
    for options, name in [({"fraction": 0.0}, "fraction"), ({"fraction": 0.6}, "fraction"), ({"tau": 1.5}, "tau"),
                          ({"removed": {"vision": [0]}}, "removed"), ({"groups": ["language"]}, "groups")]:
        with pytest.raises(ValueError, match=name):
            method.config(options)
    with pytest.raises(ValueError, match="removed.*calibration"):
        method.apply(tiny(tokenizer), method.config({}))
    for removed in ({"fusion": [4]}, {"action_expert": [0, 1]}):  # out of range; every block
        with pytest.raises(ValueError, match="removed") as err:
            method.apply(tiny(tokenizer), method.config({"removed": removed}))
        assert "\n" not in str(err.value)


# ------------------------------------------------------------------------------- CapVector
def perturbed(state: dict, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    return {n: t + 0.01 * torch.randn(t.shape, generator=gen) if t.is_floating_point() else t
            for n, t in state.items()}


def test_capability_vector_merge_and_file(tokenizer, tmp_path):
    pt = tiny(tokenizer).state_dict()
    ft, ao = perturbed(pt, 1), perturbed(pt, 2)
    ao["head.weight"] = torch.zeros(3, 32)  # the auxiliary head: only in the ao run, not in the vector
    gamma = capability_vector(ft, ao)
    params = {n for n, _ in tiny(tokenizer).named_parameters()}
    assert set(gamma) == params  # buffers (state_mean, state_std) and the head left out
    assert all(torch.equal(gamma[n], ao[n] - ft[n]) for n in gamma)
    model = merge_vector(tiny(tokenizer), gamma, 0.0)
    assert all(torch.equal(model.state_dict()[n], pt[n]) for n in pt)
    model = merge_vector(tiny(tokenizer), gamma, 1.0)
    assert all(torch.equal(model.state_dict()[n], pt[n] + gamma[n]) for n in gamma)
    model = merge_vector(tiny(tokenizer), gamma, {"action_expert.head.weight": 2.0})
    assert torch.equal(model.action_expert.head.weight, pt["action_expert.head.weight"] + 2.0 * gamma["action_expert.head.weight"])
    assert torch.equal(model.fusion.norm.weight, pt["fusion.norm.weight"])  # not named: not merged
    save_vector(gamma, tmp_path / "v.safetensors")
    loaded = load_vector(tmp_path / "v.safetensors")
    assert set(loaded) == set(gamma) and all(torch.equal(loaded[n], gamma[n]) for n in gamma)


def test_capvector_apply_regularizer_and_training(tokenizer, tmp_path):
    pt = tiny(tokenizer).state_dict()
    gamma = capability_vector(perturbed(pt, 1), perturbed(pt, 2))
    save_vector(gamma, tmp_path / "v.safetensors")
    method = get_method("capvector")
    config = method.config({"vector": str(tmp_path / "v.safetensors"), "alpha": 0.5, "lam": 1e-2})
    model = method.apply(tiny(tokenizer), config)
    assert torch.allclose(model.fusion.layers[0].mlp.up_proj.weight,
                          pt["fusion.layers.0.mlp.up_proj.weight"] + 0.5 * gamma["fusion.layers.0.mlp.up_proj.weight"])
    assert trainable(model) == {n for n, _ in model.named_parameters()} and not method.can_merge
    assert set(model.state_dict()) == set(pt)  # theta_start is not saved
    assert method.losses(model, config)["orth"].item() == 0.0  # no update yet
    steps(model, 1)
    orth = method.losses(model, config)["orth"]
    orth.backward()
    assert orth.item() > 0 and model.fusion.layers[0].attn.q_proj.weight.grad is not None


def test_orthogonality_loss_by_hand():
    model = nn.Linear(2, 2)
    gamma = {"weight": torch.eye(2), "bias": torch.tensor([1.0, -1.0])}
    start = {"weight": torch.zeros(2, 2), "bias": torch.zeros(2)}
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))  # orthogonal to eye
        model.bias.copy_(torch.tensor([2.0, 2.0]))  # orthogonal to [1, -1]
    assert orthogonality_loss(model, gamma, start, lam=0.1).item() == 0.0
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))  # <eye, W> = 5
        model.bias.copy_(torch.tensor([1.0, 3.0]))  # <[1, -1], b> = -2
    loss = orthogonality_loss(model, gamma, start, lam=0.1)
    assert loss.item() == pytest.approx(0.1 * (5 + 2))
    loss.backward()
    assert torch.allclose(model.weight.grad, 0.1 * torch.eye(2))
    assert torch.allclose(model.bias.grad, -0.1 * torch.tensor([1.0, -1.0]))  # sign of -2


def test_lora_orthogonality_loss_by_hand():
    model = nn.Module()
    model.proj = LoraLinear(nn.Linear(3, 2), rank=1, scaling=1.0)
    dense = {"proj.weight": torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])}  # rows: the capability's inputs
    with torch.no_grad():
        model.proj.lora_A.weight.copy_(torch.tensor([[1.0, 0.0, 0.0]]))
    assert lora_orthogonality_loss(model, dense, lam=0.5).item() == 0.0
    with torch.no_grad():
        model.proj.lora_A.weight.copy_(torch.tensor([[1.0, 2.0, 0.0]]))  # A G^T = [2, 0]
    loss = lora_orthogonality_loss(model, dense, lam=0.5)
    assert loss.item() == pytest.approx(0.5 * 4)
    loss.backward()
    assert model.proj.lora_A.weight.grad is not None
    low_rank = {"proj.lora_A.weight": torch.tensor([[0.0, 1.0, 1.0]])}  # a vector from LoRA fine-tunes
    assert lora_orthogonality_loss(model, low_rank, lam=1.0).item() == pytest.approx(4.0)


def test_capvector_bad_options(tokenizer, tmp_path):
    method = get_method("capvector")
    for options, name in [({"alpha": -1.0}, "alpha"), ({"lam": -0.1}, "lam")]:
        with pytest.raises(ValueError, match=name):
            method.config(options)
    for path in ("", str(tmp_path / "missing.safetensors")):
        with pytest.raises(ValueError, match="vector"):
            method.apply(tiny(tokenizer), method.config({"vector": path}))
    save_vector({"fusion.norm.weight": torch.zeros(5)}, tmp_path / "bad.safetensors")
    with pytest.raises(ValueError, match="fusion.norm.weight.*shape"):
        method.apply(tiny(tokenizer), method.config({"vector": str(tmp_path / "bad.safetensors")}))
    save_vector({"fusion.layers.9.mlp.up_proj.weight": torch.zeros(1)}, tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="no parameter fusion.layers.9"):
        method.apply(tiny(tokenizer), method.config({"vector": str(tmp_path / "other.safetensors")}))


def test_auxiliary_objective(tokenizer):
    state = torch.arange(5 * 8, dtype=torch.float32).view(5, 8)  # frame i: position (8i, 8i+1, 8i+2)
    demos = DemoSet(images={}, state=state, action=torch.zeros(5, 7), instruction=["a", "b"],
                    episode_of=np.array([0, 0, 0, 1, 1]), start=np.array([0, 3]), length=np.array([3, 2]), robots=[])
    targets = future_positions(demos, np.array([0, 1, 2, 3]), horizon=1)
    assert targets[:, 0].tolist() == [8.0, 16.0, 16.0, 32.0]  # clipped at each episode's last frame
    model, head = tiny(tokenizer), AuxiliaryHead(32, horizon=1)
    calls = []
    model.fusion.register_forward_hook(lambda *_: calls.append(1))
    total, stats = ao_loss(model, head, batch(), weight=0.5)
    assert len(calls) == 1  # the trunk ran once for both losses
    assert total.item() == pytest.approx(stats["loss"] + 0.5 * stats["aux"], rel=1e-5)
    assert auxiliary_loss(model, head, batch()).item() == pytest.approx(stats["aux"], rel=1e-5)
    total.backward()
    assert head.mlp[1].weight.grad is not None and model.fusion.layers[0].attn.q_proj.weight.grad is not None
    # as in the training loop: no targets in the batch, frame indices instead
    b = {k: v[:4] for k, v in batch().items() if k != "future_position"} | {"frames": np.array([0, 1, 2, 3])}
    expected = auxiliary_loss(model, head, b | {"future_position": targets})
    assert auxiliary_loss(model, head, b, demos).item() == pytest.approx(expected.item())
    with pytest.raises(ValueError, match="future_position"):
        auxiliary_loss(model, head, {k: v for k, v in b.items() if k != "frames"}, demos)
