"""LoRA (and rsLoRA): low-rank updates B A added to frozen linear layers."""

from policies.adapters.lora.config import LoraConfig
from policies.adapters.lora.layer import LoraLinear
from policies.adapters.lora.model import apply, peft_config

__all__ = ["LoraConfig", "LoraLinear", "apply", "peft_config"]

Config = LoraConfig
CAN_MERGE = True
