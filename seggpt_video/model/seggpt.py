"""The SegGPT network: a plain ViT over a prompt stacked on a query, two streams merged early.

Tensors in, tensors out; parameter names follow the authors' release so its checkpoint loads as is.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from seggpt_video.model.config import SegGPTConfig

AttentionImpl = Literal["sdpa", "bias", "folded", "math"]


def relative_position_table(rel_pos: torch.Tensor, size: int) -> torch.Tensor:
    """Embedding of every (query, key) offset along one axis: (size, size, head_dim).

    Global attention only (query and key grids equal), so no interpolation of the table is needed.
    """
    if rel_pos.shape[0] != 2 * size - 1:
        raise ValueError(f"relative position table of length {rel_pos.shape[0]} for axis {size}")
    coords = torch.arange(size, device=rel_pos.device)
    return rel_pos[coords[:, None] - coords[None, :] + (size - 1)]


class FoldedBuffers(threading.local):
    """q', k', v' for :meth:`Attention.attend_folded` without autograd, kept between blocks.

    The keys' one-hot rows and columns and the padding never change, so they are written once
    and each block copies in only its q, k, v and bias. One shape is kept, per thread: blocks
    run one after another, and each overwrites what the last one read. A forward releases them
    when it ends, so no memory stays held between calls.
    """

    def __init__(self) -> None:
        self.key: tuple | None = None
        self.tensors: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def get(
        self, q: torch.Tensor, rows: int, cols: int, padded: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        key = (*q.shape, rows, cols, padded, q.dtype, q.device, torch.is_inference_mode_enabled())
        if key != self.key or self.tensors is None:
            self.release()  # free the old buffers before allocating new ones
            batch, heads, length, dim = q.shape
            folded_q, folded_k, folded_v = q.new_zeros(3, batch, heads, length, padded).unbind(0)
            folded_k[..., dim : dim + rows + cols] = key_one_hot(rows, cols, q)
            self.key, self.tensors = key, (folded_q, folded_k, folded_v)
        return self.tensors

    def release(self) -> None:
        self.key, self.tensors = None, None


def key_one_hot(rows: int, cols: int, like: torch.Tensor) -> torch.Tensor:
    """(rows * cols, rows + cols): each key's grid row and column, one-hot."""
    key_rows = torch.eye(rows, dtype=like.dtype, device=like.device).repeat_interleave(cols, 0)
    key_cols = torch.eye(cols, dtype=like.dtype, device=like.device).repeat(rows, 1)
    return torch.cat([key_rows, key_cols], dim=-1)


_folded_buffers = FoldedBuffers()


class Attention(nn.Module):
    """Global multi-head attention with decomposed relative position bias (as in ViTDet / SAM)."""

    def __init__(self, config: SegGPTConfig) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.head_dim = config.head_dim
        self.scale = self.head_dim**-0.5
        rows, cols = config.grid
        self.qkv = nn.Linear(config.embed_dim, 3 * config.embed_dim, bias=True)
        self.proj = nn.Linear(config.embed_dim, config.embed_dim)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * rows - 1, self.head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * cols - 1, self.head_dim))
        self.impl: AttentionImpl = "sdpa"

    def position_bias(self, q: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
        """Additive attention bias from the unscaled queries: (B, heads, L, L)."""
        batch = q.shape[0]
        q_grid = q.reshape(batch, self.num_heads, rows, cols, self.head_dim)
        table_h = relative_position_table(self.rel_pos_h, rows).to(q.dtype)
        table_w = relative_position_table(self.rel_pos_w, cols).to(q.dtype)
        # Contiguous first: the broadcast add lays its (L, L) output out like its inputs, and the
        # einsum's permuted layout would make the final reshape copy the whole bias again.
        bias_h = torch.einsum("bnhwc,hkc->bnhwk", q_grid, table_h).contiguous()
        bias_w = torch.einsum("bnhwc,wkc->bnhwk", q_grid, table_w).contiguous()
        if q.device.type == "cpu":
            # The CPU's broadcast add is 4x slower in bf16 than in fp32, and its fused attention
            # takes an fp32 bias for bf16 queries (measured: README, Speed).
            bias_h, bias_w = bias_h.float(), bias_w.float()
        bias = bias_h[..., :, None] + bias_w[..., None, :]
        return bias.view(batch, self.num_heads, rows * cols, rows * cols)

    def attend_folded(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rows: int, cols: int
    ) -> torch.Tensor:
        """Attention with the position bias folded into queries and keys: (B, heads, L, head_dim).

        The decomposed bias of query i and key j is ``bias_h[i, row(j)] + bias_w[i, col(j)]``,
        so appending ``[bias_h[i], bias_w[i]]`` to query i and the one-hot ``[row(j), col(j)]``
        to key j makes one dot product give ``q.k * scale + bias``: no (L, L) bias is written
        or read, and the fused kernel runs unmasked. It costs ``rows + cols`` more channels in
        the two attention matmuls, a win where matmuls are cheap next to memory traffic (bf16
        with AMX: attention 2.1x faster, fp32: 10% slower; measured: README, Speed).
        """
        batch, heads, length, dim = q.shape
        q_grid = q.reshape(batch, heads, rows, cols, dim)
        table_h = relative_position_table(self.rel_pos_h, rows).to(q.dtype)
        table_w = relative_position_table(self.rel_pos_w, cols).to(q.dtype)
        bias_h = torch.einsum("bnhwc,hkc->bnhwk", q_grid, table_h)
        bias_w = torch.einsum("bnhwc,wkc->bnhwk", q_grid, table_w)
        # The fused kernels want one head size for q, k and v: pad all three to a multiple of 32.
        padded = -(-(dim + rows + cols) // 32) * 32
        if torch.is_grad_enabled():
            key_extra = key_one_hot(rows, cols, q).expand(batch, heads, length, -1)
            zeros = q.new_zeros(batch, heads, length, padded - dim)  # zero only what is padding
            pad = zeros[..., : padded - dim - rows - cols]
            bias_h = bias_h.reshape(batch, heads, length, rows)
            bias_w = bias_w.reshape(batch, heads, length, cols)
            folded_q = torch.cat([q * self.scale, bias_h, bias_w, pad], dim=-1)
            folded_k = torch.cat([k, key_extra, pad], dim=-1)
            folded_v = torch.cat([v, zeros], dim=-1)
        else:  # no autograd: buffers with the constant channels already in place
            folded_q, folded_k, folded_v = _folded_buffers.get(q, rows, cols, padded)
            torch.mul(q, self.scale, out=folded_q[..., :dim])
            folded_q[..., dim : dim + rows].view_as(bias_h).copy_(bias_h)
            folded_q[..., dim + rows : dim + rows + cols].view_as(bias_w).copy_(bias_w)
            folded_k[..., :dim].copy_(k)
            folded_v[..., :dim].copy_(v)
        out = F.scaled_dot_product_attention(folded_q, folded_k, folded_v, scale=1.0)
        return out[..., :dim]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, rows, cols, C) -> (B, rows, cols, C)."""
        return self.proj(self.attend(self.qkv(x)))

    def attend(self, qkv: torch.Tensor) -> torch.Tensor:
        """Attention from projected queries, keys, values (B, rows, cols, 3C): (B, rows, cols, C).

        Heads merged, before the output projection.
        """
        batch, rows, cols, _ = qkv.shape
        qkv = qkv.reshape(batch, rows * cols, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, L, head_dim)
        impl = self.impl
        if impl == "sdpa":  # the faster fused form of the same sum for the dtype (attend_folded)
            impl = "bias" if q.dtype == torch.float32 else "folded"
        if impl == "folded":
            out = self.attend_folded(q, k, v, rows, cols)
            return out.transpose(1, 2).reshape(batch, rows, cols, -1)
        bias = self.position_bias(q, rows, cols)
        if impl == "bias":
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        else:
            logits = (q * self.scale) @ k.transpose(-2, -1) + bias
            out = logits.softmax(dim=-1).to(v.dtype) @ v
        return out.transpose(1, 2).reshape(batch, rows, cols, -1)


class Mlp(nn.Module):
    def __init__(self, config: SegGPTConfig) -> None:
        super().__init__()
        hidden = int(config.embed_dim * config.mlp_ratio)
        self.fc1 = nn.Linear(config.embed_dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, config.embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def ensemble_query_half(x: torch.Tensor, prompts: int) -> torch.Tensor:
    """Replace the query half (bottom rows) of every item by its mean over the prompts.

    x: (queries * prompts, rows, cols, C), query-major: prompts of one query are consecutive.
    """
    if prompts == 1:
        return x
    prompt_half, query_half = x.split(x.shape[1] // 2, dim=1)
    shape = query_half.shape
    query_half = query_half.reshape(-1, prompts, *shape[1:])
    query_half = query_half.mean(dim=1, keepdim=True).expand_as(query_half).reshape(shape)
    return torch.cat([prompt_half, query_half], dim=1)


class Block(nn.Module):
    """Pre-norm transformer block; feature ensemble happens after attention, before the residual."""

    def __init__(self, config: SegGPTConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(config.embed_dim, eps=config.layer_norm_eps)
        self.attn = Attention(config)
        self.norm2 = nn.LayerNorm(config.embed_dim, eps=config.layer_norm_eps)
        self.mlp = Mlp(config)

    def forward(self, x: torch.Tensor, prompts: int = 1) -> torch.Tensor:
        """x: (queries * prompts, rows, cols, C); prompts > 1 turns on feature ensemble."""
        x = x + ensemble_query_half(self.attn(self.norm1(x)), prompts)
        return x + self.mlp(self.norm2(x))

    def forward_shared(
        self, prompt_half: torch.Tensor, query_half: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` with feature ensemble for items that share their query half.

        prompt_half: (Q * P, rows/2, cols, C), P prompts per query, query-major; query_half:
        (Q, rows/2, cols, C), once per query (see :func:`split_shared`). Each item still attends
        over its own prompt and the query, but the query half's attention output is averaged over
        the P prompts, so it stays shared: its qkv, projection and MLP run once per query.
        """
        prompts = prompt_half.shape[0] // query_half.shape[0]
        prompt_half, attended_query = self.prompt_side(prompt_half, query_half)
        return prompt_half, self.query_side(query_half, attended_query, prompts)

    def prompt_side(
        self, prompt_half: torch.Tensor, query_half: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each item's prompt half through the block, and its query half's attention output
        before the ensemble mean, (Q * P, rows/2, cols, C) each: nothing here mixes one item's
        prompt with another's (see :meth:`SegGPT.encode_target_prompts`)."""
        prompts = prompt_half.shape[0] // query_half.shape[0]
        qkv_query = self.attn.qkv(self.norm1(query_half)).repeat_interleave(prompts, dim=0)
        qkv = torch.cat([self.attn.qkv(self.norm1(prompt_half)), qkv_query], dim=1)
        attended_prompt, attended_query = self.attn.attend(qkv).split(prompt_half.shape[1], dim=1)
        prompt_half = prompt_half + self.attn.proj(attended_prompt)
        return prompt_half + self.mlp(self.norm2(prompt_half)), attended_query

    def query_side(
        self, query_half: torch.Tensor, attended_query: torch.Tensor, prompts: int
    ) -> torch.Tensor:
        """The shared query half (Q, ...) through the block, from its items' attention outputs
        (Q * P, ...): their mean over the P prompts is the feature ensemble."""
        # The projection is affine: the mean of the projections is the projection of the mean.
        attended_query = attended_query.unflatten(0, (-1, prompts)).mean(dim=1)
        query_half = query_half + self.attn.proj(attended_query)
        return query_half + self.mlp(self.norm2(query_half))


def split_shared(x: torch.Tensor, prompts: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Items (Q * P, rows, cols, C) -> prompt halves (Q * P, ...) and query halves (Q, ...).

    None unless P > 1 and the P items of each query hold the same query half (the same query
    image, the same mask tokens: the usual case), which can then be computed once.
    """
    if prompts == 1:
        return None
    prompt_half, query_half = x.split(x.shape[1] // 2, dim=1)
    shared = query_half[::prompts]
    if not torch.equal(query_half, shared.repeat_interleave(prompts, dim=0)):
        return None
    return prompt_half, shared


def run_blocks(blocks: Iterable[Block], x: torch.Tensor, prompts: int) -> torch.Tensor:
    """x (Q * P, rows, cols, C) through ``blocks``, query halves shared when they can be."""
    shared = split_shared(x, prompts)
    if shared is None:
        for block in blocks:
            x = block(x, prompts)
        return x
    return run_shared(blocks, *shared)


def run_shared(
    blocks: Iterable[Block], prompt_half: torch.Tensor, query_half: torch.Tensor
) -> torch.Tensor:
    """Prompt halves (Q * P, ...) and shared query halves (Q, ...) through ``blocks``, joined
    back into items (Q * P, rows, cols, C)."""
    prompts = prompt_half.shape[0] // query_half.shape[0]
    for block in blocks:
        prompt_half, query_half = block.forward_shared(prompt_half, query_half)
    return torch.cat([prompt_half, query_half.repeat_interleave(prompts, dim=0)], dim=1)


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of a (N, C, H, W) map."""

    def __init__(self, channels: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # One fused kernel over channels-last memory (what the decoder passes), in place of the
        # release's five full-size elementwise passes; same formula (biased variance).
        channels_last = x.permute(0, 2, 3, 1)
        normed = F.layer_norm(
            channels_last, channels_last.shape[-1:], self.weight, self.bias, self.eps
        )
        return normed.permute(0, 3, 1, 2)


class PatchEmbed(nn.Module):
    def __init__(self, config: SegGPTConfig) -> None:
        super().__init__()
        p = config.patch_size
        self.proj = nn.Conv2d(3, config.embed_dim, kernel_size=p, stride=p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, H/p, W/p, C), contiguous.

        Contiguous once here: a permuted view would carry its channel-first layout through every
        residual add of every block (strided adds, and a copy before each LayerNorm: ViT-L bf16
        1.52 -> 1.29 s per frame; measured: README, Speed).
        """
        return self.proj(x).permute(0, 2, 3, 1).contiguous()


class SegGPT(nn.Module):
    """SegGPT: paints the query's mask given a prompt image and its mask.

    ``forward`` keeps the release's contract: ``imgs`` and ``tgts`` are (N, 3, H, W) stacked
    [prompt; query] in ImageNet-normalised space, ``bool_masked_pos`` (N, L) marks the target
    patches replaced by the mask token, ``seg_type`` (N,) is 0 (semantic) or 1 (instance). The
    output is (N, 3, H, W) in normalised space; the query's prediction is its bottom half.
    """

    def __init__(self, config: SegGPTConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.embed_dim
        self.patch_embed = PatchEmbed(config)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.segment_token_x = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.segment_token_y = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.type_token_cls = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.type_token_ins = nn.Parameter(torch.zeros(1, 1, 1, dim))
        pretrain_grid = config.pretrain_image_size // config.patch_size
        self.pos_embed = nn.Parameter(torch.zeros(1, pretrain_grid**2 + 1, dim))
        self._position_cache: tuple[tuple, torch.Tensor] | None = None  # position_embedding()
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        p, decoder_dim = config.patch_size, config.decoder_embed_dim
        self.decoder_embed = nn.Linear(dim * len(config.feature_depths), p * p * decoder_dim)
        self.decoder_pred = nn.Sequential(
            nn.Conv2d(decoder_dim, decoder_dim, kernel_size=3, padding=1),
            LayerNorm2d(decoder_dim, eps=config.layer_norm_eps),
            nn.GELU(),
            nn.Conv2d(decoder_dim, 3, kernel_size=1),
        )
        self.reset_parameters()

    # -- set-up -------------------------------------------------------------------------------
    def reset_parameters(self) -> None:
        """Initialise as the release does for training from scratch (trunc-normal 0.02)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for token in (
            self.mask_token,
            self.segment_token_x,
            self.segment_token_y,
            self.type_token_cls,
            self.type_token_ins,
        ):
            nn.init.normal_(token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def set_attention(self, impl: AttentionImpl) -> None:
        """Fused SDPA: "sdpa" (default) picks "bias" (the position bias as the mask) in fp32 and
        "folded" (bias folded into q and k) otherwise; "math" is the plain softmax reference."""
        for block in self.blocks:
            block.attn.impl = impl

    # -- encoder ------------------------------------------------------------------------------
    def position_embedding(self) -> torch.Tensor:
        """Absolute position embedding resized bicubic from pretraining: (1, rows, cols, C).

        Without autograd the resized table is kept until the parameter changes: the bicubic
        resize costs as much as a few LayerNorms on every forward.
        """
        if torch.is_grad_enabled():
            return self._resized_position_embedding()
        table = self.pos_embed
        source = (table.data_ptr(), table._version, table.dtype, torch.is_inference_mode_enabled())
        if self._position_cache is None or self._position_cache[0] != source:
            self._position_cache = (source, self._resized_position_embedding())
        return self._position_cache[1]

    def _resized_position_embedding(self) -> torch.Tensor:
        table = self.pos_embed[:, 1:]
        side = int(round(table.shape[1] ** 0.5))
        rows, cols = self.config.grid
        grid = table.reshape(1, side, side, -1)
        if (side, side) == (rows, cols):
            return grid
        grid = F.interpolate(
            grid.permute(0, 3, 1, 2), size=(rows, cols), mode="bicubic", align_corners=False
        )
        return grid.permute(0, 2, 3, 1)

    def type_embedding(self, seg_type: torch.Tensor) -> torch.Tensor:
        """(N,) seg types -> (N, 1, 1, C): instance token for 1, semantic token for 0."""
        is_instance = seg_type.reshape(-1, 1, 1, 1).to(torch.bool)
        return torch.where(is_instance, self.type_token_ins, self.type_token_cls)

    def embed_images(self, imgs: torch.Tensor, seg_type: torch.Tensor) -> torch.Tensor:
        """Image stream tokens: (N, 3, H, W) -> (N, rows, cols, C)."""
        x = self.patch_embed(imgs) + self.segment_token_x + self.position_embedding()
        return x + self.type_embedding(seg_type)

    def embed_targets(
        self, tgts: torch.Tensor, bool_masked_pos: torch.Tensor, seg_type: torch.Tensor
    ) -> torch.Tensor:
        """Target stream tokens, masked patches replaced by the mask token: (N, rows, cols, C)."""
        y = self.patch_embed(tgts)
        rows, cols = y.shape[1:3]
        w = bool_masked_pos.reshape(-1, rows, cols, 1).to(y.dtype)
        y = y * (1 - w) + self.mask_token * w
        y = y + self.segment_token_y + self.position_embedding()
        return y + self.type_embedding(seg_type)

    def encode_targets(
        self,
        tgts: torch.Tensor,
        bool_masked_pos: torch.Tensor,
        seg_type: torch.Tensor,
        prompts_per_query: int = 1,
    ) -> torch.Tensor:
        """The target stream up to the merge (before averaging): (N, rows, cols, C).

        Before the merge the target stream never sees the images, so with the query half masked
        it depends only on the prompts' masks: callers can compute it once per prompt set.
        """
        y = self.embed_targets(tgts, bool_masked_pos, seg_type)
        y = run_blocks(self.blocks[: self.config.merge_index + 1], y, prompts_per_query)
        _folded_buffers.release()
        return y

    def encode_target_prompts(
        self, tgts: torch.Tensor, bool_masked_pos: torch.Tensor, seg_type: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The target stream's first block, prompt by prompt, for callers that keep it per
        prompt: a video's prompt set changes by one frame at a time.

        With the query half masked, every prompt's query half is the same mask tokens, and the
        first block mixes prompts only after attention (the ensemble mean), so what comes before
        depends on one prompt alone. Returns the prompt halves after the block and the query
        half's attention outputs before the mean, (N, rows/2, cols, C) each, and the query half
        before the block, (1, rows/2, cols, C); :meth:`finish_targets` completes them.
        """
        y = self.embed_targets(tgts, bool_masked_pos, seg_type)
        prompt_half, query_half = y.split(y.shape[1] // 2, dim=1)
        if not torch.equal(query_half, query_half[:1].expand_as(query_half)):
            raise ValueError("prompts whose query halves differ (mask or seg type) cannot share")
        prompt_half, attended_query = self.blocks[0].prompt_side(prompt_half, query_half[:1])
        _folded_buffers.release()
        return prompt_half, attended_query, query_half[:1]

    def finish_targets(
        self,
        prompt_halves: torch.Tensor,
        attended_queries: torch.Tensor,
        query_half: torch.Tensor,
        prompts_per_query: int,
    ) -> torch.Tensor:
        """:meth:`encode_targets` of Q prompt sets from :meth:`encode_target_prompts`' parts of
        their prompts, (Q * P, ...) query-major: (Q * P, rows, cols, C)."""
        sets = prompt_halves.shape[0] // prompts_per_query
        query_half = self.blocks[0].query_side(
            query_half.expand(sets, -1, -1, -1), attended_queries, prompts_per_query
        )
        y = run_shared(self.blocks[1 : self.config.merge_index + 1], prompt_halves, query_half)
        _folded_buffers.release()
        return y

    def forward_features(
        self,
        imgs: torch.Tensor,
        tgts: torch.Tensor | None,
        bool_masked_pos: torch.Tensor,
        seg_type: torch.Tensor,
        prompts_per_query: int = 1,
        targets: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """Normalised features at ``config.feature_depths``: each (N, rows, cols, C).

        The batch holds ``N / prompts_per_query`` queries, each with ``prompts_per_query`` prompts
        (query-major) sharing its query image; with more than one prompt the query halves are
        ensembled per query. ``targets``, from :meth:`encode_targets`, stand in for ``tgts``:
        for one query's prompts (P, rows, cols, C), serving every query, or for each item
        (N, rows, cols, C), when queries have prompts of their own.
        """
        batch, prompts = imgs.shape[0], prompts_per_query
        if batch % prompts:
            raise ValueError(f"batch {batch} is not a multiple of {prompts} prompts")
        if targets is None:
            targets = self.encode_targets(tgts, bool_masked_pos, seg_type, prompts)
        elif targets.shape[0] not in (prompts, batch):
            raise ValueError(f"targets for {targets.shape[0]} items, not {prompts} or {batch}")
        # (queries or 1, prompts, ...): shared targets broadcast over the queries without a copy.
        targets = targets.unflatten(0, (-1, prompts))
        # The streams are separate batch items up to the merge (the release's per-stream mean).
        x = self.embed_images(imgs, seg_type)
        features, start = [], 0
        for end in sorted({self.config.merge_index, *self.config.feature_depths}):
            x = run_blocks(self.blocks[start : end + 1], x, prompts)
            start = end + 1
            if end == self.config.merge_index:
                x = ((x.unflatten(0, (-1, prompts)) + targets) * 0.5).flatten(0, 1)
            if end in self.config.feature_depths:
                features.append(self.norm(x))
        _folded_buffers.release()
        return features

    # -- decoder ------------------------------------------------------------------------------
    def forward_decoder(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Paint the patch rows given: features (N, rows, cols, C) -> (N, 3, rows*p, cols*p).

        With all rows this paints the full stacked target in normalised space.
        """
        x = self.decoder_embed(torch.cat(features, dim=-1))
        batch, rows, cols, _ = x.shape
        p, decoder_dim = self.config.patch_size, self.config.decoder_embed_dim
        x = x.reshape(batch, rows, cols, p, p, decoder_dim).permute(0, 1, 3, 2, 4, 5)
        # An (N, C, H, W) view of channels-last memory: the convolutions and the LayerNorm then
        # run without transposing the full-resolution map.
        x = x.reshape(batch, rows * p, cols * p, decoder_dim).permute(0, 3, 1, 2)
        return self.decoder_pred(x)

    def forward_query_decoder(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Paint only the query half: features -> (N, 3, H/2, W), equal to that half of the full.

        The 3x3 convolution reads one pixel row above the query half, so the last prompt patch
        row is decoded too and dropped; the crop's own top padding only touches that row.
        """
        seam = features[0].shape[1] // 2 - 1
        painted = self.forward_decoder([f[:, seam:] for f in features])
        return painted[:, :, self.config.patch_size :]

    def forward(
        self,
        imgs: torch.Tensor,
        tgts: torch.Tensor,
        bool_masked_pos: torch.Tensor,
        seg_type: torch.Tensor,
        feature_ensemble: bool = False,
    ) -> torch.Tensor:
        """The release's contract; ``feature_ensemble``: the whole batch is one query's prompts."""
        prompts = imgs.shape[0] if feature_ensemble else 1
        features = self.forward_features(imgs, tgts, bool_masked_pos, seg_type, prompts)
        return self.forward_decoder(features)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())
