"""Every adapter method on a real VLA backbone: a tiny transformers SmolVLM (SmolVLA's backbone), built
from a config written here (nothing is downloaded). Methods are chosen and configured with the flags of
``simeval finetune``. Checked: the default targets are SmolVLM's attention and MLP projections, identity at
initialisation (GSE within its 1/rho bound), only adapter parameters train, save and load, and LoRA
equal to peft's LoRA on that model (same weights, same outputs, and peft loads the saved adapter)."""

from __future__ import annotations

import argparse
import copy
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from policies.adapters import get_method, load_adapter, save_adapter
from policies.adapters.base import adapter_layers, count_parameters, fingerprint, group_of
from policies.adapters.capvector import capability_vector, save_vector
from policies.adapters.gse import GseLinear
from policies.adapters.lora import LoraLinear
from policies.adapters.lora_sp import LoraSPLinear, ranks_by_group
from policies.adapters.registry import PACKAGES, Method
from simeval.method_flags import add_method_flags

transformers = pytest.importorskip("transformers")  # pinned in the test extra
pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

IMAGE_TOKEN, IMAGE_SIZE, PATCH = 95, 32, 8
IMAGE_TOKENS = (IMAGE_SIZE // PATCH) ** 2 // 4  # per image, after the connector's pixel shuffle (scale 2)
VECTOR = "capability_vector.safetensors"
# each method's flags, as given to ``simeval finetune``; SmolVLM has blocks in vision and fusion only
FLAGS = {"full": [], "lora": ["--rank", "4", "--alpha", "8"], "lora_sp": ["--bank", "8"], "gse": [],
         "last_k": ["--layers", "1", "--groups", "vision,fusion"], "clp": ["--groups", "vision,fusion"],
         "capvector": ["--vector", VECTOR, "--alpha", "0.5", "--lam", "0.01"]}
ADAPTERS = {"lora": LoraLinear, "lora_sp": LoraSPLinear, "gse": GseLinear}


def tiny_smolvlm(seed: int = 0) -> nn.Module:
    """SmolVLMForConditionalGeneration with a 2-block SigLIP-style tower and a 2-block Llama decoder."""
    config = transformers.SmolVLMConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=IMAGE_SIZE, patch_size=PATCH),
        text_config=dict(model_type="llama", vocab_size=96, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=64, pad_token_id=0),
        image_token_id=IMAGE_TOKEN, scale_factor=2)
    torch.manual_seed(seed)
    return transformers.SmolVLMForConditionalGeneration(config).eval()


@pytest.fixture(scope="module")
def base() -> nn.Module:
    return tiny_smolvlm()


def inputs(seed: int = 0, n: int = 2) -> dict:
    """Token ids with one image's placeholder tokens, and that image per sample."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, IMAGE_TOKEN, (n, 12), generator=g)
    ids[:, 1:1 + IMAGE_TOKENS] = IMAGE_TOKEN
    pixels = torch.rand(n, 1, 3, IMAGE_SIZE, IMAGE_SIZE, generator=g)
    return {"input_ids": ids, "pixel_values": pixels, "use_cache": False}


@torch.no_grad()
def logits(model: nn.Module, seed: int = 0) -> torch.Tensor:
    return model.eval()(**inputs(seed)).logits  # [B, T, vocab]


def cli_options(flags: list[str]) -> dict:
    """Method options exactly as ``simeval finetune`` reads them from its flags."""
    parser = argparse.ArgumentParser()
    add_method_flags(parser)
    args = vars(parser.parse_args(flags))
    return {k[len("opt_"):]: v for k, v in args.items() if k.startswith("opt_") and v is not None}


def write_vector(base: nn.Module, directory: Path) -> None:
    """A capability vector for ``base``: the difference of two small perturbations of its weights."""
    def perturbed(seed: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        return {n: p.detach() + 0.01 * torch.randn(p.shape, generator=g) for n, p in base.named_parameters()}

    directory.mkdir(parents=True, exist_ok=True)
    save_vector(capability_vector(perturbed(1), perturbed(2)), directory / VECTOR)


def adapt(base: nn.Module, name: str, directory: Path, *extra: str):
    """(method, config, adapted copy of ``base``), as ``simeval finetune`` applies a method: CapVector's
    vector lies in ``directory`` under a relative name, CLP plans from one calibration batch."""
    method = get_method(name)
    config = method.config(cli_options([*FLAGS[name], *extra]))
    if name == "capvector":
        write_vector(base, directory)
    model = method.apply(copy.deepcopy(base), config, adapter_dir=directory, calibration=inputs(seed=9))
    return method, config, model


def train_steps(model: nn.Module, method: Method, config, steps: int = 3) -> None:
    """Adam (no weight decay: a parameter moves only through its gradient) on the LM loss + the method's terms."""
    model.train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for step in range(steps):
        batch = inputs(seed=step)
        loss = model(**batch, labels=batch["input_ids"]).loss
        loss = loss + sum(method.losses(model, config).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


def adapter_parameters(model: nn.Module) -> set[str]:
    """Names of the parameters adapter layers list as theirs (``adapter_names``)."""
    names = set()
    for prefix, layer in adapter_layers(model):
        for child in layer.adapter_names:
            obj = getattr(layer, child)
            suffixes = [""] if isinstance(obj, nn.Parameter) else ["." + n for n, _ in obj.named_parameters()]
            names |= {f"{prefix}.{child}{suffix}" for suffix in suffixes}
    return names


def expected_trainable(model: nn.Module, name: str) -> set[str]:
    """What each method should release on this model, written out for last_k."""
    everything = {n for n, _ in model.named_parameters()}
    if name in ADAPTERS:
        return adapter_parameters(model)
    if name == "last_k":  # the last block of the tower and of the decoder, and what follows each
        tails = ("model.vision_model.encoder.layers.1.", "model.vision_model.post_layernorm.", "model.connector.",
                 "model.text_model.layers.1.", "model.text_model.norm.")
        return {n for n in everything if n.startswith(tails)}
    return everything  # full, clp (the pruned model), capvector (from theta_meta)


# -------------------------------------------------------------------------------- targets, groups
def test_default_targets_are_the_attention_and_mlp_projections(base):
    """Without --targets: every attention and MLP projection of the tower and the decoder, in their groups."""
    linears = {n for n, m in base.named_modules() if isinstance(m, nn.Linear)}
    model = get_method("lora").apply(copy.deepcopy(base), get_method("lora").config(cli_options(FLAGS["lora"])))
    adapted = {n for n, _ in adapter_layers(model)}
    assert adapted == linears - {"model.connector.modality_projection.proj", "lm_head"}
    assert {n.rsplit(".", 1)[1] for n in adapted} == {"q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2",
                                                      "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert {group_of(n) for n in adapted} == {"vision", "fusion"}  # the tower and the text decoder
    assert group_of("model.text_model.embed_tokens.weight") == group_of("lm_head.weight") == "language"
    counts = count_parameters(model)
    assert counts["trainable"]["vision"] > 0 and counts["trainable"]["fusion"] > 0
    assert counts["trainable"]["language"] == counts["trainable"]["action_expert"] == 0
    assert counts["total"]["total"] == sum(counts["total"][g] for g in ("vision", "language", "fusion"))


def test_targets_and_groups_flags_narrow_the_choice(base):
    """--targets and --groups pick modules by name and group, as on the reference VLA."""
    method = get_method("lora")
    config = method.config(cli_options(["--targets", r".*\.(q_proj|v_proj)", "--groups", "fusion", "--rank", "2"]))
    model = method.apply(copy.deepcopy(base), config)
    assert {n for n, _ in adapter_layers(model)} == {f"model.text_model.layers.{i}.self_attn.{p}"
                                                     for i in (0, 1) for p in ("q_proj", "v_proj")}


# -------------------------------------------------------------------------- identity at init
@pytest.mark.parametrize("name", ["full", "lora", "lora_sp", "last_k"])
def test_identity_at_initialisation(base, name, tmp_path):
    """The adapted model computes exactly the base's logits before any step."""
    _, _, model = adapt(base, name, tmp_path)
    assert torch.equal(logits(model), logits(base))


def test_capvector_starts_from_the_merged_vector(base, tmp_path):
    """alpha 0 is the base; otherwise theta_pt + alpha gamma, and L_orth is 0 until the first update."""
    _, _, model = adapt(base, "capvector", tmp_path, "--alpha", "0")
    assert torch.equal(logits(model), logits(base))  # alpha 0: the pretrained model back
    method, config, model = adapt(base, "capvector", tmp_path)
    gamma, own = model.capvector.gamma, dict(model.named_parameters())
    assert set(gamma) == set(own)
    assert all(torch.allclose(own[n], p + 0.5 * gamma[n], rtol=1e-6, atol=0) for n, p in base.named_parameters())
    assert method.losses(model, config)["orth"].item() == 0.0  # no update yet
    train_steps(model, method, config, steps=1)
    assert method.losses(model, config)["orth"].item() > 0.0


def test_gse_within_its_bound_at_initialisation(base, tmp_path):
    """Per layer and token, on the inputs a real forward gives it: ||y - W x - b|| <= ||W x|| / rho."""
    _, config, model = adapt(base, "gse", tmp_path)
    layers = dict(adapter_layers(model))
    assert layers and all(isinstance(layer, GseLinear) for layer in layers.values())
    seen: dict[str, torch.Tensor] = {}

    def catch(name: str):
        def hook(_: nn.Module, args: tuple) -> None:
            seen.setdefault(name, args[0])
        return hook

    handles = [layer.register_forward_pre_hook(catch(name)) for name, layer in layers.items()]
    logits(model)
    for handle in handles:
        handle.remove()
    assert set(seen) == set(layers)
    with torch.no_grad():
        for name, layer in layers.items():
            x = seen[name].reshape(-1, layer.in_features)  # [T, in]
            w = layer.base_layer.weight
            torch.testing.assert_close(layer.base_weight() + layer.expert_updates().sum(0), w, atol=1e-5, rtol=0)
            relative = (layer(x) - layer.base_layer(x)).norm(dim=-1) / (x @ w.T).norm(dim=-1)  # [T]
            assert 0 < relative.max() <= 1 / config.rho + 1e-5, name


def test_clp_prunes_the_redundant_blocks_it_planned(base, tmp_path):
    """CKA from a calibration batch plans a block per stack (a fresh model is redundant); the rest stay."""
    _, config, model = adapt(base, "clp", tmp_path)
    assert config.removed == {"vision": [1], "fusion": [1]}  # block 0 always stays; at most half of 2 goes
    for prefix, group in (("model.vision_model.encoder", "vision"), ("model.text_model", "fusion")):
        kept = [i for i in range(2) if i not in config.removed[group]]
        pruned, original = model.get_submodule(prefix).layers, base.get_submodule(prefix).layers
        assert len(pruned) == len(kept)
        for new, old in enumerate(kept):  # the surviving blocks are the original ones, in order
            assert all(torch.equal(a, b) for a, b in zip(pruned[new].parameters(), original[old].parameters()))
    assert torch.isfinite(logits(model)).all()


# ----------------------------------------------------------------------- training, save and load
@pytest.mark.parametrize("name", list(PACKAGES))
def test_only_adapter_parameters_train(base, name, tmp_path):
    """The released parameters are the method's; after 3 steps exactly those moved, and no buffer."""
    method, config, model = adapt(base, name, tmp_path)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == expected_trainable(model, name)
    if name in ADAPTERS:
        assert all(isinstance(layer, ADAPTERS[name]) for _, layer in adapter_layers(model))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    train_steps(model, method, config)
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert moved == trainable  # every adapter tensor learned, no base weight moved
    assert all(torch.equal(b, buffers[n]) for n, b in model.named_buffers())  # e.g. GSE's W_res
    if name == "lora_sp":  # the effective-rank diagnostic, per group of this model
        assert set(ranks_by_group(model)) == {"vision", "fusion"}


@pytest.mark.parametrize("name", list(PACKAGES))
def test_save_and_load_round_trip(base, name, tmp_path):
    """A trained adapter saved, moved and loaded onto a fresh copy of the base gives the same logits."""
    method, config, model = adapt(base, name, tmp_path / "adapter")
    train_steps(model, method, config, steps=2)
    save_adapter(tmp_path / "adapter", method, config, model, fingerprint(base))
    shutil.copytree(tmp_path / "adapter", tmp_path / "moved")  # self-contained: CapVector's vector travels too
    fresh = copy.deepcopy(base)
    reloaded, method_again, config_again = load_adapter(fresh, tmp_path / "moved")
    assert method_again.name == name and config_again.to_dict() == config.to_dict()
    expected = logits(model, seed=5)
    assert not torch.equal(expected, logits(base, seed=5))  # trained: the adapter carries something
    assert torch.equal(logits(reloaded, seed=5), expected)


# -------------------------------------------------------------------------------- LoRA == peft
PEFT_WARNING = "ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"  # peft 0.21 on transformers 5


def lora_with_random_b(base: nn.Module, rslora: bool):
    """(config, model): LoRA on the default targets, B (zero at init) drawn so that outputs differ."""
    method = get_method("lora")
    config = method.config(cli_options([*FLAGS["lora"], "--rslora", "true" if rslora else "false"]))
    model = method.apply(copy.deepcopy(base), config)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _, layer in adapter_layers(model):
            layer.lora_B.weight.copy_(torch.randn(layer.lora_B.weight.shape, generator=g) * 0.1)
    return config, model


@pytest.mark.filterwarnings(PEFT_WARNING)
@pytest.mark.parametrize("rslora", [False, True])
def test_lora_equals_peft(base, rslora):
    """peft's LoRA on the same targets, with our A and B copied in, computes our logits."""
    peft = pytest.importorskip("peft")
    ours_config, ours = lora_with_random_b(base, rslora)
    names = sorted(n for n, _ in adapter_layers(ours))
    config = peft.LoraConfig(r=ours_config.rank, lora_alpha=ours_config.alpha, target_modules=names,
                             lora_dropout=0.0, use_rslora=rslora)
    theirs = peft.get_peft_model(copy.deepcopy(base), config)
    with torch.no_grad():
        for name in names:
            mine, other = ours.get_submodule(name), theirs.base_model.model.get_submodule(name)
            other.lora_A["default"].weight.copy_(mine.lora_A.weight)
            other.lora_B["default"].weight.copy_(mine.lora_B.weight)
    expected = logits(ours)
    assert not torch.allclose(expected, logits(base), atol=1e-4)
    torch.testing.assert_close(logits(theirs), expected, atol=1e-6, rtol=1e-5)


@pytest.mark.filterwarnings("ignore:Unexpected keyword arguments", PEFT_WARNING)
def test_peft_loads_our_saved_lora(base, tmp_path):
    """``peft.PeftModel.from_pretrained`` reads our saved adapter into the same model and logits."""
    peft = pytest.importorskip("peft")
    config, ours = lora_with_random_b(base, rslora=False)
    save_adapter(tmp_path, get_method("lora"), config, ours, fingerprint(base))
    theirs = peft.PeftModel.from_pretrained(copy.deepcopy(base), str(tmp_path))
    torch.testing.assert_close(logits(theirs), logits(ours), atol=1e-6, rtol=1e-5)
