"""Counters the cores keep (drops by cause, retransmissions, ...), for logs and benchmarks."""

from __future__ import annotations

from dataclasses import fields


class Counters:
    """Mixin for a dataclass of int fields."""

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]
