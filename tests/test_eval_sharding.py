"""Sharding: --shard K/N parsing, torchrun ranks from the environment, who takes what."""

from __future__ import annotations

import pytest

from seggpt_video.errors import UserError
from seggpt_video.evaluation.sharding import Rank, Shard


def test_shard_parse_and_take():
    assert Shard.parse("1/3") == Shard(0, 3)
    assert Shard.parse("3/3").take(list("abcdefg")) == ["c", "f"]
    for bad in ("0/2", "3/2", "2", "a/b", "1/0"):
        with pytest.raises(UserError, match=f"--shard {bad}"):
            Shard.parse(bad)


def test_every_sequence_goes_to_exactly_one_rank_of_one_shard():
    items = list(range(23))
    taken = []
    for k in (1, 2):
        for rank in range(3):
            share = Shard.parse(f"{k}/2").split(Rank(rank, 3, rank))
            taken += share.take(items)
    assert sorted(taken) == items


def test_rank_from_torchrun_environment(monkeypatch):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    rank = Rank.from_environment()
    assert (rank.rank, rank.size, rank.local_rank, rank.is_main) == (3, 4, 1, False)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name)
    assert Rank.from_environment() == Rank(0, 1, 0)
