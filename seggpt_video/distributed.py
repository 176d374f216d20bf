"""This process's place among torchrun workers: rank, world size, its GPU, the process group.

Under torchrun (RANK, WORLD_SIZE, LOCAL_RANK in the environment) every rank takes its share of
the work, they meet at a barrier, and rank 0 merges the results; `eval` and `batch` both do so.
Run alone, a process is rank 0 of 1 and none of this costs anything.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import timedelta

from seggpt_video.errors import UserError


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
        if self.size == 1:
            return "auto"
        import torch

        return f"cuda:{self.local_rank}" if torch.cuda.is_available() else "auto"

    def start(self, timeout: timedelta | None = None) -> None:
        """Join the process group (NCCL with GPUs, gloo without); nothing to do when alone.

        timeout: how long a collective (a barrier) may wait for the slowest rank; None keeps
        torch's default (30 minutes for gloo), too short for ranks whose shares end hours apart.
        """
        if self.size == 1:
            return
        import torch
        import torch.distributed as dist

        if not dist.is_initialized():
            if torch.cuda.is_available():
                torch.cuda.set_device(self.local_rank)
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend, timeout=timeout)

    def barrier(self) -> None:
        """Wait until every rank has finished its share."""
        if self.size > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.barrier()

    def stop(self) -> None:
        """Leave the process group."""
        if "torch" not in sys.modules:
            return  # nothing imported torch, so no group was joined
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
