"""Adaptation methods for the reference VLA, sharing one mechanism (``base``): LoRA, LoRA-SP,
VLA-GSE, fewer layers (last-k and CKA-guided pruning), CapVector, and full fine-tuning.

Use :func:`get_method` (``registry``) to look a method up by name. Importing this package registers
the loader of adapted checkpoints (``policy_type`` "simeval_adapted") with ``simeval run``.
"""

from policies.adapters.io import POLICY_TYPE, load_adapted, load_adapted_policy, load_adapter, save_adapted, save_adapter
from policies.adapters.registry import PACKAGES, Method, get_method
from policies.loader import CHECKPOINT_LOADERS

CHECKPOINT_LOADERS[POLICY_TYPE] = load_adapted_policy

__all__ = ["PACKAGES", "Method", "get_method", "load_adapted", "load_adapter", "save_adapted", "save_adapter"]
