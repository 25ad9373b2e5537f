"""Adaptation methods for the reference VLA, sharing one mechanism (``base``): LoRA, LoRA-SP,
VLA-GSE, fewer layers (last-k and CKA-guided pruning), CapVector, and full fine-tuning.

Use :func:`get_method` (``registry``) to look a method up by name.
"""

from policies.adapters.io import load_adapted, load_adapted_policy, load_adapter, save_adapted, save_adapter
from policies.adapters.registry import PACKAGES, Method, get_method

__all__ = ["PACKAGES", "Method", "get_method", "load_adapted", "load_adapted_policy", "load_adapter", "save_adapted",
           "save_adapter"]
