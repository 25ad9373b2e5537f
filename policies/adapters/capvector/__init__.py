"""CapVector (arXiv 2605.10903): a capability vector from two fine-tunes, merged into the base, then
protected by an orthogonality loss during the downstream fine-tune.

Recipe: fine-tune theta_pt twice with identical settings, plainly (theta_ft) and with the auxiliary
objective (``ao_loss``: theta_ao); ``save_vector(path, capability_vector(theta_ft, theta_ao))``; then
this method with ``vector=path`` merges theta_meta = theta_pt + alpha gamma and trains every
parameter with ``regularizer`` = {"orth": L_orth}. Inference is a plain model: nothing to merge.
"""

from policies.adapters.capvector.auxiliary import AuxiliaryHead, ao_loss, auxiliary_loss, future_positions
from policies.adapters.capvector.config import Config
from policies.adapters.capvector.model import apply, regularizer
from policies.adapters.capvector.orthogonal import lora_orthogonality_loss, orthogonality_loss
from policies.adapters.capvector.vector import (capability_vector, check_vector, load_vector, merge_vector,
                                                save_vector)

CAN_MERGE = False

__all__ = ["AuxiliaryHead", "CAN_MERGE", "Config", "ao_loss", "apply", "auxiliary_loss", "capability_vector",
           "check_vector", "future_positions", "load_vector", "lora_orthogonality_loss", "merge_vector",
           "orthogonality_loss", "regularizer", "save_vector"]
