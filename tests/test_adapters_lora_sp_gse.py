"""LoRA-SP and VLA-GSE on a tiny VLA: identity / equivalence at init, what trains, checkpoints, the
energy rule and its error bound, top-k routing, option errors and the effective-rank diagnostic."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from policies.adapters import get_method
from policies.adapters.base import adapter_layers, adapter_state_dict, load_adapter_state, merge_adapters
from policies.adapters.gse import GseLinear
from policies.adapters.lora_sp import LoraSPLinear, effective_ranks, ranks_by_group, select, set_dynamic
from policies.vla import VLA, VLAConfig, build_tokenizer, instruction_corpus

torch.set_num_threads(1)  # tiny tensors: a second thread only adds contention on a busy 2-core machine
TINY = dict(image_size=32, stem_channels=(8, 16), feature_grid=4, d_model=32, n_heads=2, n_layers=2,
            vision_layers=1, expert_layers=1, chunk=4, flow_steps=4)
INSTRUCTIONS = ("put the red cube in the bowl", "pick up the blue cube")
METHODS = ("lora_sp", "gse")


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(instruction_corpus())


@pytest.fixture(scope="module")
def base(tokenizer) -> VLA:
    torch.manual_seed(0)
    return VLA(VLAConfig(head="l1", **TINY), tokenizer).eval()


def batch(n: int = 4, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    images = torch.from_numpy(rng.integers(0, 255, (n, 32, 32, 3)).astype(np.uint8))
    state = torch.from_numpy(rng.normal(size=(n, 8)).astype(np.float32))
    return {"agentview": images, "wrist": images.flip(1), "state": state,
            "instruction": [INSTRUCTIONS[i % 2] for i in range(n)],
            "actions": torch.from_numpy(rng.uniform(-1, 1, (n, 4, 7)).astype(np.float32))}


def adapted(base: VLA, method: str, **options):
    m = get_method(method)
    config = m.config(options)
    return m, config, m.apply(copy.deepcopy(base), config)


def train_steps(model: nn.Module, m, config, steps: int = 3) -> dict[str, torch.Tensor]:
    model.train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    terms: dict[str, torch.Tensor] = {}
    for step in range(steps):
        loss, _ = model.loss(batch(seed=step))
        terms = m.losses(model, config)
        opt.zero_grad()
        (loss + sum(terms.values())).backward()
        opt.step()
    return terms


# ------------------------------------------------------------------------------------ LoRA-SP
def test_lora_sp_is_the_identity_at_init(base):
    _, _, model = adapted(base, "lora_sp")
    layers = [layer for _, layer in adapter_layers(model)]
    assert layers and all(isinstance(layer, LoraSPLinear) for layer in layers)
    assert all(torch.count_nonzero(layer.lora_B.weight) == 0 for layer in layers)
    assert torch.equal(model.eval().predict(batch()), base.predict(batch()))


def test_energy_rule_by_hand():
    s = torch.tensor([[3.0, 2.0, 1.0, 0.5], [0.5, 3.0, 1.0, 2.0]])  # energies 9, 4, 1, 0.25 of 14.25
    mask, k, energy = select(s, 0.9)  # E_1 = 0.632, E_2 = 0.912 >= 0.9
    assert k.tolist() == [2, 2]
    assert mask.tolist() == [[1, 1, 0, 0], [0, 1, 0, 1]]
    assert energy.tolist() == pytest.approx([13 / 14.25] * 2)
    assert select(s, 0.95)[1].tolist() == [3, 3]  # E_3 = 0.982
    assert select(s, 0.9, "released")[1].tolist() == [1, 1]  # the released code: one fewer
    mask, k, energy = select(torch.tensor([[3.0, 0.0, 2.0, 1.0, 0.5, 0.0]]), 1.0)
    assert k.item() == 4 and mask.tolist() == [[1, 0, 1, 1, 1, 0]] and energy.item() == pytest.approx(1.0)


@pytest.mark.parametrize("eta", [0.5, 0.9, 0.99])
def test_truncation_error_within_the_energy_bound(eta):
    """With an orthonormal bank ||B diag(s) A||_F^2 = sum s^2, so the dropped share is 1 - E_k."""
    torch.manual_seed(1)
    layer = LoraSPLinear(nn.Linear(32, 24), bank=16, scaling=1.0, eta=eta, router_dropout=0.0).eval()
    with torch.no_grad():
        layer.lora_A.weight.copy_(torch.linalg.qr(torch.randn(32, 16))[0].T)  # orthonormal rows
        layer.lora_B.weight.copy_(torch.linalg.qr(torch.randn(24, 16))[0])  # orthonormal columns
    for x in torch.randn(8, 32):
        energy = select(layer.scores(x[None]), eta)[2].item()
        truncated = layer.token_update(x)
        layer.dynamic = False
        full = layer.token_update(x)
        layer.dynamic = True
        error = torch.linalg.norm(full - truncated) / torch.linalg.norm(full)
        assert energy >= eta - 1e-6
        assert error.item() <= math.sqrt(max(1 - energy, 0.0)) + 1e-4


def test_effective_rank_per_group_and_full_rank_switch(base):
    m, config, model = adapted(base, "lora_sp", bank=8)
    model.loss(batch())
    ranks, groups = effective_ranks(model), ranks_by_group(model)
    assert len(ranks) == len(list(adapter_layers(model)))
    assert set(groups) == {"vision", "fusion", "action_expert"}  # language has no Linear projection
    assert all(1 <= k <= 8 for k in (*ranks.values(), *groups.values()))
    set_dynamic(model, False)  # every direction, no selection: not counted in the statistics
    model.loss(batch())
    assert effective_ranks(model) == ranks
    aux = m.losses(model, config)
    assert set(aux) == {"lora_sp_spec", "lora_sp_balance", "lora_sp_z"}


# ---------------------------------------------------------------------------------------- GSE
def test_gse_reconstruction_and_closeness_at_init(base):
    _, _, model = adapted(base, "gse")
    layers = [layer for _, layer in adapter_layers(model)]
    assert layers and all(isinstance(layer, GseLinear) for layer in layers)
    gen = torch.Generator().manual_seed(0)
    for layer in layers:
        w = layer.base_layer.weight  # [out, in]
        torch.testing.assert_close(layer.base_weight() + layer.expert_updates().sum(0), w, atol=1e-5, rtol=0)
        x = torch.randn(64, layer.in_features, generator=gen)
        with torch.no_grad():
            diff = (layer(x) - layer.base_layer(x)).norm(dim=-1)  # [T]
        # the mismatch is sum over routed i of (1 - weight_i) U_i diag(S_i / rho) V_i^T x: shares in [0, 1]
        # of orthogonal components of W x, so per token ||diff|| <= ||W x|| / rho (rho = 10)
        relative = diff / (x @ w.T).norm(dim=-1)
        assert relative.max() <= 1 / 10 + 1e-5
        assert relative.max() > 0  # the plain-sum subtraction leaves a real mismatch


def test_gse_routes_each_token_to_top_k_experts():
    torch.manual_seed(0)
    layer = GseLinear(nn.Linear(32, 48))
    p, weights, chosen = layer.routing(torch.randn(10, 32))
    assert p.shape == weights.shape == (10, 7) and chosen.shape == (10, 2)
    assert (torch.count_nonzero(weights, dim=-1) == 2).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(10))
    assert torch.equal(weights.gather(-1, p.argmax(-1, keepdim=True)) > 0, torch.ones(10, 1, dtype=torch.bool))


def test_gse_skips_layers_below_the_rank():
    toy = nn.Module()
    toy.fusion = nn.ModuleDict({"q_proj": nn.Linear(32, 8), "k_proj": nn.Linear(32, 32)})
    m = get_method("gse")
    m.apply(toy, m.config({"targets": r"fusion\..*", "groups": ["fusion"]}))
    assert isinstance(toy.fusion["k_proj"], GseLinear) and isinstance(toy.fusion["q_proj"], nn.Linear)
    small = nn.Module()
    small.fusion = nn.ModuleDict({"q_proj": nn.Linear(32, 8)})
    with pytest.raises(ValueError, match="option rank=16"):
        m.apply(small, m.config({"targets": r"fusion\..*", "groups": ["fusion"]}))


# ------------------------------------------------------------------------------- both methods
@pytest.mark.parametrize("method", METHODS)
def test_only_adapters_train(base, method):
    m, config, model = adapted(base, method)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    expected = {"action_expert.head.weight", "action_expert.head.bias"} if method == "gse" else set()
    for name, layer in adapter_layers(model):
        for child in layer.adapter_names:
            obj = getattr(layer, child)
            names = [""] if isinstance(obj, nn.Parameter) else ["." + n for n, _ in obj.named_parameters()]
            expected |= {f"{name}.{child}{n}" for n in names}
    assert trainable == expected
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    terms = train_steps(model, m, config)
    assert terms and all(torch.isfinite(v) and v.requires_grad for v in terms.values())
    for name, param in model.named_parameters():
        assert torch.equal(param, before[name]) != (name in trainable), name
    assert all(torch.equal(b, buffers[n]) for n, b in model.named_buffers())  # W_res is not trained
    assert not m.can_merge
    with pytest.raises(ValueError, match="cannot be merged"):
        merge_adapters(model)


@pytest.mark.parametrize("method", METHODS)
def test_adapter_state_round_trip(base, method):
    m, config, model = adapted(base, method)
    train_steps(model, m, config, steps=2)
    state = adapter_state_dict(model)
    if method == "gse":
        assert any(k.endswith("weight_res") for k in state) and any(k.endswith("scales") for k in state)
    _, _, fresh = adapted(base, method)
    with torch.no_grad():  # the checkpoint, not the fresh init, must supply every adapter tensor
        for name, tensor in (*fresh.named_parameters(), *fresh.named_buffers()):
            if name in state:
                tensor.zero_()
    load_adapter_state(fresh, state, "test")
    model.eval(), fresh.eval()
    assert torch.equal(fresh.predict(batch(seed=5)), model.predict(batch(seed=5)))


@pytest.mark.parametrize("method", METHODS)
def test_config_round_trip(method):
    m = get_method(method)
    config = m.config({"groups": ["fusion"], "trainable": [r"fusion\.norm\..*"]})
    assert m.config_cls.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("method, options, option", [
    ("lora_sp", {"eta": 0}, "eta"), ("lora_sp", {"eta": 1.5}, "eta"), ("lora_sp", {"bank": 0}, "bank"),
    ("lora_sp", {"alpha": 0}, "alpha"), ("lora_sp", {"router_dropout": 1.0}, "router_dropout"),
    ("lora_sp", {"scores": "tanh"}, "scores"), ("lora_sp", {"k_rule": "greedy"}, "k_rule"),
    ("gse", {"top_k": 8}, "top_k"), ("gse", {"top_k": 0}, "top_k"), ("gse", {"experts": 1}, "experts"),
    ("gse", {"rank": 15}, "rank"), ("gse", {"shared": 0}, "shared"), ("gse", {"shared": 8}, "shared"),
    ("gse", {"rho": 0}, "rho"), ("gse", {"top_k": 3, "shared": 6}, "top_k"), ("gse", {"gates": 2}, "gates"),
])
def test_bad_options_name_the_option(method, options, option):
    with pytest.raises(ValueError, match=option):
        get_method(method).config(options)
