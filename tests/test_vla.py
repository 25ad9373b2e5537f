"""The reference VLA: config, tokenizer, model (both heads), checkpoints and the harness policy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from policies.base import Batch, EpisodeStart
from policies.vla import (VLA, VLAConfig, VLAPolicy, build_tokenizer, count_parameters, instruction_corpus,
                          load_checkpoint, load_tokenizer, load_vla_policy, save_checkpoint)
from policies.vla.model import sincos_2d
from policies.vla.tokenizer import PAD_ID, UNK_ID

torch.set_num_threads(2)
HEADS = ("l1", "flow")
TINY = dict(image_size=32, stem_channels=(8, 16), feature_grid=4, d_model=32, n_heads=2, n_layers=2,
            expert_layers=1, chunk=4, flow_steps=4)
INSTRUCTIONS = ("put the red cube in the bowl", "pick up the blue cube")


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return instruction_corpus()


@pytest.fixture(scope="module")
def tokenizer(corpus):
    return build_tokenizer(corpus)


def tiny(head: str, tokenizer, **kw) -> VLA:
    torch.manual_seed(0)
    return VLA(VLAConfig(head=head, **TINY, **kw), tokenizer)


def demos(n: int = 16, chunk: int = 4, size: int = 32, seed: int = 0) -> dict:
    """Image colour (red/blue) sets actions 0-2, the instruction actions 3-5: both must be read."""
    rng = np.random.default_rng(seed)
    colour = rng.integers(0, 2, n)
    which = rng.integers(0, 2, n)
    images = rng.integers(0, 40, (n, size, size, 3)).astype(np.uint8)
    images[colour == 0, :, :, 0] += 200
    images[colour == 1, :, :, 2] += 200
    actions = np.zeros((n, chunk, 7), np.float32)
    actions[:, :, 0:3] = np.where(colour == 0, 0.8, -0.8)[:, None, None]
    actions[:, :, 3:6] = np.where(which == 0, 0.6, -0.6)[:, None, None]
    actions[:, :, 6] = np.linspace(-1, 1, chunk)[None]
    mask = np.ones((n, chunk), bool)
    mask[0, -1] = False  # one step past an episode's end
    return {"agentview": torch.from_numpy(images), "wrist": torch.from_numpy(images[:, ::-1].copy()),
            "state": torch.from_numpy(rng.normal(size=(n, 8)).astype(np.float32)),
            "instruction": [INSTRUCTIONS[w] for w in which], "actions": torch.from_numpy(actions),
            "action_mask": torch.from_numpy(mask)}


# ---------------------------------------------------------------------------------- config
def test_config_round_trip_and_errors():
    config = VLAConfig(head="flow", **TINY)
    assert VLAConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="unknown field.*colour"):
        VLAConfig.from_dict({**config.to_dict(), "colour": 1})
    for bad, field in [({"head": "mse"}, "head"), ({"d_model": 30, "n_heads": 4}, "d_model"),
                       ({"cameras": ["left"]}, "cameras"), ({"image_size": 60}, "image_size"),
                       ({"feature_grid": 16}, "feature_grid"),
                       ({"d_model": 42, "n_heads": 3}, "multiple of 4"), ({"dropout": 1.5}, "dropout"),
                       ({"chunk": 0}, "chunk")]:
        with pytest.raises(ValueError, match=field) as err:
            VLAConfig.from_dict({**VLAConfig().to_dict(), **bad})
        assert "\n" not in str(err.value)


def test_fixed_grid_positions_tell_every_cell_apart():
    emb = sincos_2d(4, 128)  # [16, 128]
    assert emb.shape == (16, 128)
    cos = (emb @ emb.T) / (emb.norm(dim=1)[:, None] * emb.norm(dim=1)[None])
    off_diagonal = cos[~torch.eye(16, dtype=torch.bool)]
    assert off_diagonal.max() < 0.6  # neighbours differ clearly: a position is readable from step 0
    model = VLA(VLAConfig(**TINY))
    assert "vision.grid_sincos" not in model.state_dict()  # computed, not stored: checkpoints are unchanged


# ------------------------------------------------------------------------------- tokenizer
def test_tokenizer_round_trip_unknown_and_padding(tokenizer, tmp_path):
    ids, mask = tokenizer.encode(["Put the RED cube in the bowl.", "zebra cube", ""], max_tokens=64)
    assert ids.dtype == torch.long and mask.dtype == torch.bool and ids.shape == mask.shape == (3, 8)
    assert tokenizer.decode(ids[0]) == "put the red cube in the bowl ."
    assert ids[1, 0] == UNK_ID and ids[1, 1] == tokenizer.tokenizer.token_to_id("cube")
    assert mask[1].tolist() == [True, True] + [False] * 6 and (ids[1, 2:] == PAD_ID).all()
    assert not mask[2].any()
    assert tokenizer.encode(["the " * 100], max_tokens=10)[0].shape == (1, 10)
    tokenizer.save(tmp_path)
    again = load_tokenizer(tmp_path)
    assert torch.equal(again.encode(["pick up the blue cube"], 64)[0], tokenizer.encode(["pick up the blue cube"], 64)[0])


def test_every_corpus_word_is_known(tokenizer, corpus):
    from envs.perturbations.language import DISTRACTIONS, rewrite
    from envs.tasks.library import TASKS

    assert set(DISTRACTIONS) <= set(corpus)
    assert all(t.instruction in corpus for t in TASKS)
    vocab = tokenizer.tokenizer.get_vocab()
    missing = {w for text in corpus for w in tokenizer.words(text) if w not in vocab}
    assert not missing, f"words outside the vocabulary: {sorted(missing)[:10]}"
    # fresh rewrites (a seed the corpus did not use) are covered too
    from types import SimpleNamespace
    rng = np.random.default_rng(12345)
    fresh = [rewrite(SimpleNamespace(task=t), lvl, rng) for t in TASKS for lvl in range(1, 6) for _ in range(5)]
    ids, mask = tokenizer.encode(fresh, max_tokens=VLAConfig().max_tokens)
    assert not (ids[mask] == UNK_ID).any()
    assert mask.sum(1).max() <= VLAConfig().max_tokens


# ----------------------------------------------------------------------------------- model
@pytest.mark.parametrize("head", HEADS)
def test_model_groups_and_size(head, tokenizer):
    model = VLA(VLAConfig(head=head), tokenizer)
    counts = count_parameters(model)
    assert all(counts[g] > 0 for g in model.module_groups())
    assert sum(counts[g] for g in model.module_groups()) == counts["total"]
    assert 1_000_000 <= counts["total"] <= 4_000_000
    modules = dict(model.named_modules())
    for name in ("fusion.layers.0.attn.q_proj", "fusion.layers.3.mlp.down_proj",
                 "action_expert.layers.1.attn.o_proj", "action_expert.layers.0.mlp.up_proj"):
        assert isinstance(modules[name], torch.nn.Linear), name
    assert all(float(s.film.weight.detach().abs().sum()) == 0 for s in model.vision.stages)  # FiLM starts as identity


@pytest.mark.parametrize("head", HEADS)
def test_training_lowers_loss(head, tokenizer):
    model, batch = tiny(head, tokenizer), demos()
    optim = torch.optim.AdamW(model.parameters(), lr=3e-3)

    def eval_loss() -> float:
        torch.manual_seed(1)  # same flow noise and times before and after
        with torch.no_grad():
            return model.loss(batch)[0].item()

    before = eval_loss()
    torch.manual_seed(2)
    for _ in range(100):
        loss, stats = model.loss(batch)
        optim.zero_grad()
        loss.backward()
        optim.step()
    assert stats["loss"] == pytest.approx(loss.item())
    after = eval_loss()
    assert after < (0.15 if head == "l1" else 0.3) * before, (before, after)
    assert any(float(s.film.weight.detach().abs().sum()) > 0 for s in model.vision.stages)  # the instruction reaches the stem
    if head == "l1":  # the learned actions follow colour and instruction
        model.eval()
        pred = model.predict(batch)
        assert (pred[:, 0, 0].sign() == batch["actions"][:, 0, 0].sign()).all()
        assert (pred[:, 0, 3].sign() == batch["actions"][:, 0, 3].sign()).all()


@pytest.mark.parametrize("head", HEADS)
def test_predict_shape_range_and_resize(head, tokenizer):
    model = tiny(head, tokenizer).eval()
    batch = demos(n=3, size=128)  # env-sized images, resized inside
    out = model.predict(batch)
    assert out.shape == (3, 4, 7) and torch.isfinite(out).all() and out.abs().max() <= 1
    tokens = tokenizer.encode(batch["instruction"], 64)
    by_ids = model.predict({**{k: v for k, v in batch.items() if k != "instruction"},
                            "tokens": tokens[0], "token_mask": tokens[1]})
    assert torch.equal(out, by_ids)
    with pytest.raises(ValueError, match="wrist"):
        model.predict({k: v for k, v in batch.items() if k != "wrist"})


# ------------------------------------------------------------------------------ checkpoints
@pytest.mark.parametrize("head", HEADS)
def test_checkpoint_round_trip(head, tokenizer, tmp_path):
    model = tiny(head, tokenizer).eval()
    model.set_state_stats(np.full(8, 0.5), np.full(8, 2.0))
    batch = demos(n=4)
    expected = model.predict(batch, generator=torch.Generator().manual_seed(7))
    save_checkpoint(tmp_path, model, model.config, tokenizer, {"step": 3})
    assert json.loads((tmp_path / "config.json").read_text())["policy_type"] == "simeval_vla"
    loaded = load_checkpoint(tmp_path)
    assert loaded.config == model.config and loaded.extra == {"step": 3}
    got = loaded.model.predict(batch, generator=torch.Generator().manual_seed(7))
    assert torch.equal(expected, got)
    if head == "flow":  # the noise really comes from the generator
        assert not torch.equal(got, loaded.model.predict(batch, generator=torch.Generator().manual_seed(8)))


@pytest.fixture
def saved(tokenizer, tmp_path) -> Path:
    model = tiny("l1", tokenizer)
    return save_checkpoint(tmp_path / "ckpt", model, model.config, tokenizer)


def one_line_error(path: Path, match: str) -> None:
    with pytest.raises(ValueError, match=match) as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value)


def test_missing_weights(saved):
    (saved / "model.safetensors").unlink()
    one_line_error(saved, "model.safetensors: missing")


def test_corrupted_config(saved):
    (saved / "config.json").write_text('{"policy_type": "simeval_vla", "config": {')
    one_line_error(saved, "config.json: unreadable JSON")


def test_unknown_policy_type_and_bad_field(saved):
    meta = json.loads((saved / "config.json").read_text())
    (saved / "config.json").write_text(json.dumps({**meta, "policy_type": "other"}))
    one_line_error(saved, "config.json: policy_type 'other'")
    (saved / "config.json").write_text(json.dumps({**meta, "config": {**meta["config"], "head": "mse"}}))
    one_line_error(saved, "config.json: field config: .*head")


def test_config_that_does_not_match_weights(saved):
    meta = json.loads((saved / "config.json").read_text())
    meta["config"]["d_model"] = 64
    (saved / "config.json").write_text(json.dumps(meta))
    one_line_error(saved, r"model.safetensors: weights do not match config: tensor vision\.\S+ has shape")


def test_tampered_weights(saved):
    path = saved / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    one_line_error(saved, "model.safetensors: SHA-256 does not match")


def test_unparseable_weights_with_matching_hash(saved):
    import hashlib

    (saved / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}garbage")
    meta = json.loads((saved / "config.json").read_text())
    meta["weights_sha256"] = hashlib.sha256((saved / "model.safetensors").read_bytes()).hexdigest()
    (saved / "config.json").write_text(json.dumps(meta))
    one_line_error(saved, "model.safetensors: not a readable safetensors file")


# ---------------------------------------------------------------------------- harness policy
def obs_batch(n: int = 3, size: int = 64) -> Batch:
    rng = np.random.default_rng(0)
    return Batch(slots=list(range(n)), state=rng.normal(size=(n, 8)).astype(np.float32),
                 instruction=[INSTRUCTIONS[i % 2] for i in range(n)],
                 agentview=rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
                 wrist=rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8))


@pytest.mark.parametrize("head", HEADS)
def test_policy_act(head, tokenizer, tmp_path):
    model = tiny(head, tokenizer)
    save_checkpoint(tmp_path, model, model.config, tokenizer)
    policy = load_vla_policy(tmp_path)
    assert policy.observation_spec.cameras == ("agentview", "wrist") and not policy.observation_spec.privileged
    starts = [EpisodeStart(f"e{i}", "PickUpBlueCube", "Piper", seed=i) for i in range(3)]
    policy.reset([0, 1, 2], starts)
    out = policy.act(obs_batch())
    assert out.shape == (3, 2, 7) and out.dtype == np.float32
    assert np.isfinite(out).all() and np.abs(out).max() <= 1
    # an episode's actions do not depend on its batch-mates (flow noise is per slot)
    policy.reset([0, 1, 2], starts)
    single = obs_batch()
    single = Batch([1], single.state[1:2], single.instruction[1:2], single.agentview[1:2], single.wrist[1:2])
    np.testing.assert_allclose(policy.act(single)[0], out[1], atol=1e-5)
    assert VLAPolicy(model, chunk_exec=4).act(obs_batch()).shape == (3, 4, 7)
    with pytest.raises(ValueError, match="chunk_exec"):
        VLAPolicy(model, chunk_exec=5)


def test_policy_rejects_bad_observations(tokenizer):
    policy = VLAPolicy(tiny("l1", tokenizer))
    good = obs_batch()
    bad_cases = {
        "agentview": Batch(good.slots, good.state, good.instruction, good.agentview[:, :, :, :1], good.wrist),
        "wrist": Batch(good.slots, good.state, good.instruction, good.agentview, good.wrist.astype(np.float32)),
        "state": Batch(good.slots, good.state[:, :7], good.instruction, good.agentview, good.wrist),
        "instruction": Batch(good.slots, good.state, good.instruction[:2], good.agentview, good.wrist),
    }
    for field, batch in bad_cases.items():
        with pytest.raises(ValueError, match=f"observation field {field}") as err:
            policy.act(batch)
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="observation field wrist: missing"):
        policy.act(Batch(good.slots, good.state, good.instruction, good.agentview, None))


def test_registered_with_the_loader(tokenizer, tmp_path):
    from policies.loader import load_policy, resolve_loader

    assert resolve_loader("simeval_vla") is load_vla_policy
    model = tiny("flow", tokenizer)
    save_checkpoint(tmp_path, model, model.config, tokenizer)
    assert isinstance(load_policy(str(tmp_path)), VLAPolicy)
