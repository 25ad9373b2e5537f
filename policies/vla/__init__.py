"""The project's reference vision-language-action policy (SmolVLA-style, CPU-sized)."""

from policies.vla.checkpoint import load_checkpoint, save_checkpoint
from policies.vla.config import VLAConfig
from policies.vla.model import VLA, count_parameters
from policies.vla.policy import VLAPolicy, load_vla_policy
from policies.vla.tokenizer import InstructionTokenizer, build_tokenizer, instruction_corpus, load_tokenizer

__all__ = ["VLA", "VLAConfig", "VLAPolicy", "InstructionTokenizer", "build_tokenizer", "count_parameters",
           "instruction_corpus", "load_checkpoint", "load_tokenizer", "load_vla_policy", "save_checkpoint"]
