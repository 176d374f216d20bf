"""`transformers`' SegGPT as a test oracle: same weights, same inputs, its own code."""

from __future__ import annotations

import torch
from transformers import SegGptConfig, SegGptForImageSegmentation

from seggpt_video.model import SegGPT
from seggpt_video.model.checkpoint import official_to_hf
from seggpt_video.model.config import SegGPTConfig


def hf_config(config: SegGPTConfig) -> SegGptConfig:
    return SegGptConfig(
        hidden_size=config.embed_dim,
        num_hidden_layers=config.depth,
        num_attention_heads=config.num_heads,
        image_size=list(config.image_size),
        patch_size=config.patch_size,
        mlp_dim=int(config.embed_dim * config.mlp_ratio),
        pretrain_image_size=config.pretrain_image_size,
        decoder_hidden_size=config.decoder_embed_dim,
        merge_index=config.merge_index,
        intermediate_hidden_state_indices=list(config.feature_depths),
        layer_norm_eps=config.layer_norm_eps,
        drop_path_rate=0.0,
    )


def oracle_from(model: SegGPT) -> SegGptForImageSegmentation:
    """A transformers SegGPT holding exactly ``model``'s weights."""
    oracle = SegGptForImageSegmentation(hf_config(model.config)).eval()
    oracle.load_state_dict(official_to_hf(model.state_dict()), strict=True)
    return oracle


def correct_merge_block(oracle: SegGptForImageSegmentation) -> None:
    """Make the oracle follow the release: the merge block averages per stream, not over all.

    transformers passes ensemble_cond=1 (whole batch) to the merge block; the release uses the
    per-stream rule (ensemble_cond=2) up to and including it.
    """
    layer = oracle.model.encoder.layers[oracle.config.merge_index]
    original = layer.forward

    def forward(hidden_states, ensemble_cond, *args, **kwargs):
        return original(hidden_states, 2, *args, **kwargs)

    layer.forward = forward


@torch.no_grad()
def oracle_forward(
    oracle: SegGptForImageSegmentation,
    imgs: torch.Tensor,
    tgts: torch.Tensor,
    bool_masked_pos: torch.Tensor,
    embedding_type: str,
    feature_ensemble: bool = False,
) -> torch.Tensor:
    """Run the oracle on release-style stacked inputs; returns (N, 3, H, W) normalised."""
    half = imgs.shape[2] // 2
    return oracle(
        pixel_values=imgs[:, :, half:],
        prompt_pixel_values=imgs[:, :, :half],
        prompt_masks=tgts[:, :, :half],
        bool_masked_pos=bool_masked_pos,
        embedding_type=embedding_type,
        feature_ensemble=feature_ensemble,
    ).pred_masks
