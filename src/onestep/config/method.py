"""The method section of a config: the registered methods, their defaults filled in, switching method."""

from __future__ import annotations

import copy

from onestep.config.files import deep_merge
from onestep.methods import METHODS, defaults


def method_names() -> list[str]:
    """The registered methods (methods.METHODS), in registry order."""
    return list(METHODS)


def method_section(section: dict) -> dict:
    """`section` over its method's defaults (every knob of METHODS[name].Config); as is for an unknown name."""
    name = section.get("name")
    return deep_merge(defaults(name), section) if name in METHODS else copy.deepcopy(section)


def resolve(cfg: dict) -> dict:
    """`cfg` with its method section filled from the method's dataclass defaults."""
    return {**cfg, "method": method_section(cfg["method"])}


def with_method(cfg: dict, section: dict) -> dict:
    """`cfg` with its method section set from `section` (nested keys), every knob filled. Switching to
    another method starts from that method's dataclass defaults, not the current method's keys."""
    name = section.get("name", cfg["method"]["name"])
    start = cfg["method"] if name == cfg["method"]["name"] else {"name": name}
    return {**cfg, "method": method_section(deep_merge(start, section))}
