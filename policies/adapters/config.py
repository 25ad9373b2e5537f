"""Options every method shares: which Linear modules (by name pattern) in which groups, what else trains."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from typing import Any

from policies.adapters.base import DEFAULT_TARGETS, GROUPS, check_groups
from policies.integrity import first_line, short


@dataclass
class AdapterConfig:
    targets: str = DEFAULT_TARGETS  # regex on full module names (fullmatch)
    groups: tuple[str, ...] = GROUPS  # module groups the targets are looked for in
    trainable: tuple[str, ...] = ()  # extra parameter-name regexes that train too (e.g. the action head)

    def __post_init__(self) -> None:
        require(isinstance(self.groups, (list, tuple)), "groups", "a list of group names", self.groups)
        try:
            self.groups = check_groups(tuple(self.groups))
        except ValueError as err:  # its message quotes the groups, which may be huge strings
            raise ValueError(first_line(err)) from None
        require(isinstance(self.targets, str), "targets", "a regular expression string", self.targets)
        require(isinstance(self.trainable, (list, tuple)) and all(isinstance(t, str) for t in self.trainable),
                "trainable", "a list of regular expression strings", self.trainable)
        self.trainable = tuple(self.trainable)
        for pattern in self.trainable:  # compiled by mark_trainable, whose re.error is no ValueError
            try:
                re.compile(pattern)
            except re.error as err:
                raise ValueError(f"option trainable: {short(pattern)} is not a regular expression ({err})") from None

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "options") -> "AdapterConfig":
        """The config from ``to_dict`` output or CLI options; one line naming an unknown option."""
        if not isinstance(data, dict):
            raise ValueError(f"{source}: options must be an object of option -> value, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: option {short(unknown[0])} does not apply to this method; "
                             f"its options: {', '.join(sorted(known))}")
        return cls(**data)


def require(condition: bool, option: str, valid: str, value: Any) -> None:
    """The one-line error for an option out of range: names the option, its value and the valid range."""
    if not condition:
        raise ValueError(f"option {option}={short(value)} is out of range: valid {valid}")
