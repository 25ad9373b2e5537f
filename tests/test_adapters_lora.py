"""LoRA and the shared adapter mechanism: identity at start, the freezing rule, peft equality and
layout, merge, save/load, adapted checkpoints as policies, and the bad-input errors."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from policies.adapters import get_method, load_adapted, load_adapter, save_adapted, save_adapter
from policies.adapters.base import count_parameters, fingerprint, merge_adapters
from policies.adapters.lora import LoraLinear
from policies.base import Batch
from policies.loader import load_policy
from policies.vla import VLA, VLAConfig, build_tokenizer, instruction_corpus, save_checkpoint

torch.set_num_threads(2)
TINY = dict(image_size=32, stem_channels=(8, 16), feature_grid=4, d_model=32, n_heads=2, n_layers=2,
            vision_layers=1, expert_layers=1, chunk=4, flow_steps=4)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(instruction_corpus())


@pytest.fixture
def base(tokenizer) -> VLA:
    torch.manual_seed(0)
    return VLA(VLAConfig(**TINY), tokenizer).eval()


def batch(n: int = 3, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"agentview": torch.randint(0, 256, (n, 32, 32, 3), generator=g, dtype=torch.uint8),
            "wrist": torch.randint(0, 256, (n, 32, 32, 3), generator=g, dtype=torch.uint8),
            "state": torch.randn(n, 8, generator=g), "instruction": ["put the red cube in the bowl"] * n,
            "actions": torch.rand(n, 4, 7, generator=g) * 2 - 1}


def lora(model: VLA, **options) -> VLA:
    method = get_method("lora")
    return method.apply(model, method.config(options))


def randomise_b(model: torch.nn.Module) -> None:
    """B starts at zero; give it values so that comparisons are not trivially equal."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LoraLinear):
                module.lora_B.weight.copy_(torch.randn(module.lora_B.weight.shape, generator=g) * 0.1)


def test_identity_at_start_and_only_adapters_train(base):
    before = base.predict(batch())
    model = lora(copy.deepcopy(base), rank=4)
    assert torch.equal(model.predict(batch()), before)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    counts = count_parameters(model)
    assert counts["trainable"]["vision"] > 0 and counts["trainable"]["fusion"] > 0
    assert counts["trainable"]["action_expert"] > 0 and counts["trainable"]["language"] == 0
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(3):
        loss, _ = model.loss(batch())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if not p.requires_grad)
    assert not torch.equal(model.eval().predict(batch()), before)


@pytest.mark.parametrize("rslora", [False, True])
def test_outputs_equal_peft_on_same_weights(base, rslora):
    peft = pytest.importorskip("peft")
    ours = lora(copy.deepcopy(base), rank=4, alpha=8.0, rslora=rslora)
    randomise_b(ours)
    names = sorted(n for n, m in ours.named_modules() if isinstance(m, LoraLinear))
    config = peft.LoraConfig(r=4, lora_alpha=8.0, target_modules=names, lora_dropout=0.0, use_rslora=rslora)
    theirs = peft.get_peft_model(copy.deepcopy(base), config).eval()
    with torch.no_grad():
        for name in names:
            mine, other = ours.get_submodule(name), theirs.base_model.model.get_submodule(name)
            other.lora_A["default"].weight.copy_(mine.lora_A.weight)
            other.lora_B["default"].weight.copy_(mine.lora_B.weight)
    expected = ours.eval().predict(batch())
    assert not torch.allclose(expected, base.predict(batch()))
    assert torch.allclose(theirs.base_model.model.predict(batch()), expected, atol=1e-6)


@pytest.mark.filterwarnings("ignore:Unexpected keyword arguments")
def test_saved_adapter_loads_in_peft_and_back(base, tmp_path):
    peft = pytest.importorskip("peft")
    ours = lora(copy.deepcopy(base), rank=4)
    randomise_b(ours)
    save_adapter(tmp_path, get_method("lora"), get_method("lora").config({"rank": 4}), ours, fingerprint(base))
    meta = json.loads((tmp_path / "adapter_config.json").read_text())
    assert meta["peft_type"] == "LORA" and meta["r"] == 4
    from safetensors.torch import load_file

    keys = load_file(str(tmp_path / "adapter_model.safetensors"))
    assert "base_model.model.fusion.layers.0.attn.q_proj.lora_A.weight" in keys
    expected = ours.eval().predict(batch())
    theirs = peft.PeftModel.from_pretrained(copy.deepcopy(base), str(tmp_path)).eval()
    assert torch.allclose(theirs.base_model.model.predict(batch()), expected, atol=1e-6)
    reloaded, _, _ = load_adapter(copy.deepcopy(base), tmp_path)
    assert torch.equal(reloaded.eval().predict(batch()), expected)


def test_merge_equals_unmerged(base):
    model = lora(copy.deepcopy(base), rank=4)
    randomise_b(model)
    expected = model.eval().predict(batch())
    merge_adapters(model)
    assert not any(isinstance(m, LoraLinear) for m in model.modules())
    assert torch.allclose(model.predict(batch()), expected, atol=1e-5)


def test_adapted_checkpoint_is_a_policy(base, tmp_path):
    save_checkpoint(tmp_path / "base", base, base.config, base.tokenizer)
    model = lora(copy.deepcopy(base), rank=4)
    randomise_b(model)
    method = get_method("lora")
    save_adapted(tmp_path / "adapted", tmp_path / "base", method, method.config({"rank": 4}), model, fingerprint(base))
    loaded, _, _ = load_adapted(tmp_path / "adapted")
    assert torch.equal(loaded.predict(batch()), model.eval().predict(batch()))
    policy = load_policy(str(tmp_path / "adapted"))
    rng = np.random.default_rng(0)
    obs = Batch(slots=[0, 1], state=rng.normal(size=(2, 8)).astype(np.float32), instruction=["pick up the blue cube"] * 2,
                agentview=rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8),
                wrist=rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8))
    assert policy.act(obs).shape == (2, 2, 7)


def test_bad_options_and_mismatched_base(base, tokenizer, tmp_path):
    method = get_method("lora")
    with pytest.raises(ValueError, match="rank=64 is out of range: valid 1..32"):
        method.apply(copy.deepcopy(base), method.config({"rank": 64}))
    with pytest.raises(ValueError, match="option rank=0"):
        method.config({"rank": 0})
    with pytest.raises(ValueError, match="matches no Linear module"):
        method.apply(copy.deepcopy(base), method.config({"targets": r".*\.nonexistent"}))
    with pytest.raises(ValueError, match="option 'eta' does not apply"):
        method.config({"eta": 0.9})
    with pytest.raises(ValueError, match="unknown method 'dora'; valid methods: full, lora"):
        get_method("dora")
    with pytest.raises(ValueError, match="unknown or empty"):
        method.config({"groups": ("vision", "decoder")})
    save_adapter(tmp_path, method, method.config({"rank": 2}), lora(copy.deepcopy(base), rank=2), fingerprint(base))
    torch.manual_seed(1)
    other = VLA(VLAConfig(**TINY), tokenizer)
    with pytest.raises(ValueError, match="adapter was trained on base"):
        load_adapter(other, tmp_path)
