"""Options every method shares: which Linear modules (by name pattern) in which groups, what else trains."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from policies.adapters.base import DEFAULT_TARGETS, GROUPS, check_groups


@dataclass
class AdapterConfig:
    targets: str = DEFAULT_TARGETS  # regex on full module names (fullmatch)
    groups: tuple[str, ...] = GROUPS  # module groups the targets are looked for in
    trainable: tuple[str, ...] = ()  # extra parameter-name regexes that train too (e.g. the action head)

    def __post_init__(self) -> None:
        self.groups = check_groups(tuple(self.groups))
        self.trainable = tuple(self.trainable)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "options") -> "AdapterConfig":
        """The config from ``to_dict`` output or CLI options; one line naming an unknown option."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: option {unknown[0]!r} does not apply to this method; "
                             f"its options: {', '.join(sorted(known))}")
        return cls(**data)


def require(condition: bool, option: str, valid: str, value: Any) -> None:
    """The one-line error for an option out of range: names the option, its value and the valid range."""
    if not condition:
        raise ValueError(f"option {option}={value!r} is out of range: valid {valid}")
