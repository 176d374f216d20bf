"""Split a benchmark's sequences over shards: ``--shard K/N`` and/or ranks under torchrun.

Under torchrun (RANK, WORLD_SIZE, LOCAL_RANK in the environment) every rank takes its share,
they meet at a torch.distributed barrier, and rank 0 merges the results. ``--shard K/N`` splits
the same way across separate launches (machines, or runs one after another).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

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


@dataclass(frozen=True)
class Rank:
    """This process's place among the torchrun workers (rank 0 of 1 when run alone)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @classmethod
    def from_environment(cls) -> Rank:
        """Read RANK, WORLD_SIZE and LOCAL_RANK as torchrun sets them."""
        try:
            size = int(os.environ.get("WORLD_SIZE", "1"))
            rank = int(os.environ.get("RANK", "0"))
            local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
        except ValueError:
            raise UserError("RANK/WORLD_SIZE/LOCAL_RANK: expected whole numbers") from None
        return cls(rank, size, local_rank)

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the merged results."""
        return self.rank == 0

    @property
    def device(self) -> str:
        """One GPU per rank (``cuda:LOCAL_RANK``) when there are GPUs, else the usual choice."""
        return f"cuda:{self.local_rank}" if torch.cuda.is_available() and self.size > 1 else "auto"

    def start(self) -> None:
        """Join the process group (NCCL with GPUs, gloo without); nothing to do when alone."""
        if self.size > 1 and not dist.is_initialized():
            if torch.cuda.is_available():
                torch.cuda.set_device(self.local_rank)
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")

    def barrier(self) -> None:
        """Wait until every rank has finished its share."""
        if self.size > 1 and dist.is_initialized():
            dist.barrier()

    def stop(self) -> None:
        """Leave the process group."""
        if dist.is_initialized():
            dist.destroy_process_group()
