"""CKA-guided layer pruning (arXiv 2606.20246): remove redundant transformer blocks, fine-tune the rest.

``apply(model, config, calibration=batch)`` plans once from one batch and records the plan in
``config.removed``; applying with a recorded plan prunes the same blocks without calibration.
"""

from policies.adapters.layers.clp.cka import layer_similarities, linear_cka
from policies.adapters.layers.clp.prune import CAN_MERGE, Config, apply, plan_pruning, pruned_config

__all__ = ["CAN_MERGE", "Config", "apply", "layer_similarities", "linear_cka", "plan_pruning", "pruned_config"]
