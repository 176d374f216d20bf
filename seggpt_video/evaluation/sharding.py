"""Split a benchmark's sequences over shards: ``--shard K/N`` and/or ranks under torchrun.

Under torchrun every rank (:class:`seggpt_video.distributed.Rank`) takes its share, they meet at
a torch.distributed barrier, and rank 0 merges the results. ``--shard K/N`` splits the same way
across separate launches (machines, or runs one after another).
"""

from __future__ import annotations

from dataclasses import dataclass

from seggpt_video.distributed import Rank
from seggpt_video.errors import UserError


@dataclass(frozen=True)
class Shard:
    """Which share of the work this process does: ``index`` (0-based) of ``count``."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"K/N"`` with 1 <= K <= N, as the user writes it."""
        try:
            k, n = (int(part) for part in text.split("/"))
        except ValueError:
            raise UserError(f"--shard {text}: expected K/N, e.g. 1/4") from None
        if not 1 <= k <= n:
            raise UserError(f"--shard {text}: K must be between 1 and N")
        return cls(k - 1, n)

    def split(self, world: Rank) -> Shard:
        """This rank's part of this shard: N shards of W ranks make N*W parts."""
        return Shard(self.index * world.size + world.rank, self.count * world.size)

    def take(self, items: list) -> list:
        """Every ``count``-th item starting at ``index`` (round robin keeps shards balanced)."""
        return items[self.index :: self.count]

    @property
    def is_whole(self) -> bool:
        """True when this process does all the work."""
        return self.count == 1
