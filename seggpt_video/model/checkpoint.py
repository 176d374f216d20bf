"""Checkpoint formats: the authors' ``.pth``, Hugging Face folders, and our own safetensors.

Every path ends in a strict load: a missing, unexpected or misshapen tensor is an error
that names it.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from seggpt_video.errors import UserError
from seggpt_video.io.atomic import atomic_path
from seggpt_video.model.config import PRESETS, SegGPTConfig
from seggpt_video.model.seggpt import SegGPT

HUB_REPOS = {"seggpt-vit-large": "BAAI/seggpt-vit-large"}
PACKAGED_WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
WEIGHTS_DIR_ENV = "SEGGPT_VIDEO_WEIGHTS"

# (official name, Hugging Face name); "{}" stands for a block number. A name ending in "." is a
# prefix (weight/bias follow), any other is a whole name.
_NAME_PAIRS = [
    ("patch_embed.proj.", "model.embeddings.patch_embeddings.projection."),
    ("mask_token", "model.embeddings.mask_token"),
    ("segment_token_x", "model.embeddings.segment_token_input"),
    ("segment_token_y", "model.embeddings.segment_token_prompt"),
    ("type_token_cls", "model.embeddings.type_token_semantic"),
    ("type_token_ins", "model.embeddings.type_token_instance"),
    ("pos_embed", "model.embeddings.position_embeddings"),
    ("blocks.{}.norm1.", "model.encoder.layers.{}.layernorm_before."),
    ("blocks.{}.norm2.", "model.encoder.layers.{}.layernorm_after."),
    ("blocks.{}.attn.", "model.encoder.layers.{}.attention."),
    ("blocks.{}.mlp.fc1.", "model.encoder.layers.{}.mlp.lin1."),
    ("blocks.{}.mlp.fc2.", "model.encoder.layers.{}.mlp.lin2."),
    ("norm.", "model.encoder.layernorm."),
    ("decoder_embed.", "decoder.decoder_embed."),
    ("decoder_pred.0.", "decoder.decoder_pred.conv."),
    ("decoder_pred.1.", "decoder.decoder_pred.layernorm."),
    ("decoder_pred.3.", "decoder.decoder_pred.head."),
]


def _rename(name: str, source: int) -> str:
    """Rename one tensor between conventions (source 0: official, 1: HF); unknown names stay."""
    for pair in _NAME_PAIRS:
        pattern = re.escape(pair[source]).replace(r"\{\}", r"(\d+)")
        match = re.match(pattern if pair[source].endswith(".") else pattern + "$", name)
        if match:
            return pair[1 - source].format(*match.groups()) + name[match.end() :]
    return name


def official_to_hf(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an official state dict to Hugging Face names."""
    return {_rename(k, 0): v for k, v in state.items()}


def hf_to_official(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a Hugging Face state dict to official names."""
    return {_rename(k, 1): v for k, v in state.items()}


def detect_format(keys: set[str]) -> str:
    """'official' or 'hf', from the names of the tensors."""
    if any(k.startswith("model.encoder.layers.") for k in keys):
        return "hf"
    if any(k.startswith("blocks.") for k in keys):
        return "official"
    raise ValueError("neither official (blocks.N.*) nor Hugging Face (model.encoder.*) names")


def infer_config(state: Mapping[str, torch.Tensor]) -> SegGPTConfig:
    """Read the network's shape from an official-format state dict.

    Width, depth, heads, patch, input grid, MLP ratio and decoder width come from shapes; the merge
    index and feature depths are the release's for depth 24 and must be given otherwise.
    """
    patch_weight = state["patch_embed.proj.weight"]
    embed_dim, _, patch, _ = patch_weight.shape
    depth = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k)))
    head_dim = state["blocks.0.attn.rel_pos_h"].shape[1]
    rows = (state["blocks.0.attn.rel_pos_h"].shape[0] + 1) // 2
    cols = (state["blocks.0.attn.rel_pos_w"].shape[0] + 1) // 2
    pretrain_grid = round((state["pos_embed"].shape[1] - 1) ** 0.5)
    hidden = state["blocks.0.mlp.fc1.weight"].shape[0]
    num_features = state["decoder_embed.weight"].shape[1] // embed_dim
    if depth != 24 or num_features != 4:
        raise ValueError(
            f"depth {depth} with {num_features} decoder features: merge index and feature "
            "depths are only known for the release's depth 24; save the config with the weights"
        )
    return SegGPTConfig(
        image_size=(rows * patch, cols * patch),
        patch_size=patch,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=embed_dim // head_dim,
        mlp_ratio=hidden / embed_dim,
        pretrain_image_size=pretrain_grid * patch,
        merge_index=2,
        feature_depths=(5, 11, 17, 23),
        decoder_embed_dim=state["decoder_pred.0.weight"].shape[0],
        name="seggpt-vit-large" if embed_dim == 1024 else "custom",
    )


def config_from_hf(hf: Mapping) -> SegGPTConfig:
    """Our config from a Hugging Face ``config.json``."""
    image_size = hf.get("image_size", (896, 448))
    patch = hf.get("patch_size", 16)
    hidden = hf.get("hidden_size", 1024)
    return SegGPTConfig(
        image_size=tuple(image_size),
        patch_size=patch if isinstance(patch, int) else patch[0],
        embed_dim=hidden,
        depth=hf.get("num_hidden_layers", 24),
        num_heads=hf.get("num_attention_heads", 16),
        mlp_ratio=(hf.get("mlp_dim") or 4 * hidden) / hidden,
        pretrain_image_size=hf.get("pretrain_image_size", 224),
        merge_index=hf.get("merge_index", 2),
        feature_depths=tuple(hf.get("intermediate_hidden_state_indices", (5, 11, 17, 23))),
        decoder_embed_dim=hf.get("decoder_hidden_size", 64),
        layer_norm_eps=hf.get("layer_norm_eps", 1e-6),
    )


def load_weights_strict(model: SegGPT, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Copy ``state`` (official names) into ``model``; name missing, extra, misshapen tensors."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshapen = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append("missing " + ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else ""))
    if unexpected:
        problems.append(
            "unexpected " + ", ".join(unexpected[:8]) + (" ..." if len(unexpected) > 8 else "")
        )
    if misshapen:
        problems.append("wrong shape " + "; ".join(misshapen[:8]))
    if problems:
        raise UserError(f"{source}: checkpoint does not fit the model: " + " | ".join(problems))
    model.load_state_dict(state, strict=True)


_SIGNATURES = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"%PDF": "a PDF document",
    b"\x1f\x8b": "a gzip archive",
}


def weights_file_kind(path: Path, expected: str = "model weights") -> str:
    """'safetensors' or 'torch' from a file's first bytes, or UserError saying what it is instead.

    The content decides, not the suffix: a text file named .pth would otherwise reach the
    unpickler and fail with a bare KeyError. expected: what the caller wanted, for the message.
    """
    if not path.is_file():
        raise UserError(f"{path}: not a file (expected {expected})")
    try:
        with path.open("rb") as handle:
            head = handle.read(4096)
    except OSError as error:
        raise UserError(f"{path}: cannot read it ({error.strerror})") from None
    if not head:
        raise UserError(f"{path}: empty file, not {expected}")
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\x80"):
        return "torch"  # torch.save's zip archive, or its legacy pickle
    if len(head) > 8 and head[8:9] == b"{":
        return "safetensors"  # 8-byte header length, then the JSON header
    for signature, what in _SIGNATURES.items():
        if head.startswith(signature):
            raise UserError(f"{path}: {what}, not {expected}")
    if head.startswith(b"version https://git-lfs"):
        raise UserError(f"{path}: a Git LFS pointer, not the file itself (fetch it: git lfs pull)")
    if b"\0" not in head:
        try:
            head.decode("utf-8")
            raise UserError(f"{path}: a text file, not {expected}")
        except UnicodeDecodeError:
            pass
    raise UserError(f"{path}: not {expected} (neither safetensors nor a PyTorch file)")


def _first_line(error: BaseException) -> str:
    """The first sentence of an error's message (torch's run on for a paragraph)."""
    text = str(error).strip()
    return text.splitlines()[0].split(". ")[0].rstrip(".") if text else type(error).__name__


def _read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and metadata of one weights file (safetensors or torch.save), by its content."""
    if weights_file_kind(path) == "safetensors":
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
            return load_file(str(path)), metadata
        except (SafetensorError, OSError, ValueError) as error:
            raise UserError(
                f"{path}: not a readable checkpoint (truncated?): {_first_line(error)}"
            ) from None
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": noise beside our line
            warnings.simplefilter("ignore")
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(
            f"{path}: holds Python objects besides tensors, which are not loaded (untrusted "
            "code could run); save the weights alone: torch.save(model.state_dict(), path)"
        ) from None
    except Exception as error:  # a damaged pickle fails with any error type (KeyError, ...)
        raise UserError(
            f"{path}: not a readable checkpoint (truncated?): {_first_line(error)}"
        ) from None
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{path}: holds no state dict (expected tensors, or tensors under 'model')")
    return dict(obj), {}


def _read_hf_config(path: Path) -> dict:
    """A Hugging Face ``config.json`` as a dict, or UserError naming the file."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise UserError(f"{path}: not a readable JSON config ({_first_line(error)})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a model config (expected a JSON object)")
    return data


def _foreign_names(state: Mapping[str, torch.Tensor]) -> str:
    names = sorted(state)[:3]
    return ", ".join(names) + (" ..." if len(state) > 3 else "") if names else "no tensors"


def read_checkpoint(path: str | Path) -> tuple[SegGPTConfig, dict[str, torch.Tensor]]:
    """Config and official-format state dict from a file or a Hugging Face folder."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such checkpoint file or folder")
    hf_config = None
    config_file = path / "config.json" if path.is_dir() else path.parent / "config.json"
    if path.is_dir():
        candidates = [path / "model.safetensors", path / "pytorch_model.bin"]
        weights = next((c for c in candidates if c.exists()), None)
        if weights is None:
            raise UserError(f"{path}: folder has no model.safetensors or pytorch_model.bin")
        if config_file.exists():
            hf_config = _read_hf_config(config_file)
        path = weights
    elif path.suffix == ".safetensors" and config_file.exists():
        hf_config = _read_hf_config(config_file)
    state, metadata = _read_tensors(path)
    try:
        fmt = detect_format(set(state))
    except ValueError:
        raise UserError(
            f"{path}: neither official (blocks.N.*) nor Hugging Face (model.encoder.*) names: "
            f"not SegGPT weights (tensors: {_foreign_names(state)})"
        ) from None
    if fmt == "hf":
        state = hf_to_official(state)
    try:
        if "config" in metadata:
            where = "cannot read the model config from its metadata"
            config = SegGPTConfig.from_dict(json.loads(metadata["config"]))
        elif hf_config is not None and fmt == "hf":
            where = f"cannot read the model config from {config_file}"
            config = config_from_hf(hf_config)
        else:
            where = "cannot infer the model config from the tensor shapes"
            config = infer_config(state)
    except KeyError as error:
        raise UserError(f"{path}: {where}: no {error}") from None
    except (ValueError, TypeError, IndexError) as error:
        raise UserError(f"{path}: {where}: {_first_line(error)}") from None
    return config, state


def load_checkpoint(path: str | Path) -> SegGPT:
    """A SegGPT built and filled from any supported checkpoint (CPU, fp32)."""
    config, state = read_checkpoint(path)
    try:
        model = SegGPT(config)
    except (ValueError, TypeError, RuntimeError) as error:
        raise UserError(f"{path}: its config builds no network ({_first_line(error)})") from None
    load_weights_strict(model, state, str(path))
    return model.eval()


def save_checkpoint(model: SegGPT, path: str | Path) -> None:
    """Save as safetensors with the config in the metadata; atomic (temp name, then rename)."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    metadata = {"format": "seggpt-video", "config": json.dumps(model.config.to_dict())}
    with atomic_path(path) as partial:
        save_file(state, str(partial), metadata=metadata)


def resolve_model(name: str) -> Path:
    """Local weights for a model name: packaged, in ``$SEGGPT_VIDEO_WEIGHTS``, or from the hub.

    The hub download goes through huggingface_hub, which writes to a temporary name and renames
    when complete, so a half-downloaded file is never loaded.
    """
    packaged = PACKAGED_WEIGHTS / f"{name}.safetensors"
    if packaged.exists():
        return packaged
    local_dir = os.environ.get(WEIGHTS_DIR_ENV)
    if local_dir:
        for candidate in (f"{name}.safetensors", f"{name.replace('-', '_')}.pth", name):
            if (Path(local_dir) / candidate).exists():
                return Path(local_dir) / candidate
    if name not in HUB_REPOS:
        known = ", ".join(
            sorted(set(HUB_REPOS) | {p.stem for p in PACKAGED_WEIGHTS.glob("*.safetensors")})
        )
        raise UserError(f"{name}: unknown model name (known: {known}); or pass --checkpoint FILE")
    repo = HUB_REPOS[name]
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    from huggingface_hub.utils import logging as hub_logging

    cached = try_to_load_from_cache(repo, "model.safetensors")
    if isinstance(cached, str) and try_to_load_from_cache(repo, "config.json"):
        return Path(cached).parent
    hub_logging.set_verbosity_error()  # one clear message of ours instead of retry chatter
    try:
        hf_hub_download(repo, "config.json")
        return Path(hf_hub_download(repo, "model.safetensors")).parent
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(
            f"{name}: weights not cached and download from the Hugging Face hub ({repo}) failed "
            f"({reason}); put seggpt_vit_large.pth (or the {repo} folder) in ${WEIGHTS_DIR_ENV}, "
            "or pass --checkpoint FILE"
        ) from None


def load_model(name_or_path: str | Path) -> SegGPT:
    """A model from a checkpoint path or a model name (see :func:`resolve_model`).

    A ``Path`` is always a checkpoint (``--checkpoint nosuch`` says no such file, not unknown
    model); a string is one when it exists, has a weights suffix or a folder in it.
    """
    path = Path(name_or_path)
    text = str(name_or_path)
    if (
        isinstance(name_or_path, Path)
        or path.exists()
        or text.endswith((".pth", ".pt", ".bin", ".safetensors"))
        or "/" in text
        or os.sep in text
    ):
        return load_checkpoint(path)
    return load_checkpoint(resolve_model(str(name_or_path)))


def available_presets() -> list[str]:
    return sorted(PRESETS)
