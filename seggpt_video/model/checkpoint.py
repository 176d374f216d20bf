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
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from seggpt_video.errors import UserError
from seggpt_video.io.atomic import atomic_path
from seggpt_video.model.config import PRESETS, SegGPTConfig
from seggpt_video.model.seggpt import SegGPT

HUB_REPOS = {"seggpt-vit-large": "BAAI/seggpt-vit-large"}
HUB_FILES = ("config.json", "model.safetensors")  # what a download fetches, in this order
FOLDER_WEIGHTS = ("model.safetensors", "pytorch_model.bin")  # a Hugging Face folder's weights
PUBLISHED_MODEL = "seggpt-vit-large"
PACKAGED_MODEL = "seggpt-tiny"
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
        size = path.stat().st_size
    except OSError as error:
        raise UserError(f"{path}: cannot read it ({error.strerror})") from None
    if not head:
        raise UserError(f"{path}: empty file, not {expected}")
    if len(head) > 8 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < size:
        # 8-byte header length, then the JSON header. Checked first: the length's low byte can
        # be 0x80, the legacy pickle's first byte (a 9,344-byte header is 80 24 00 ...).
        return "safetensors"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\x80"):
        return "torch"  # torch.save's zip archive, or its legacy pickle
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
        weights = next((path / f for f in FOLDER_WEIGHTS if (path / f).exists()), None)
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


def packaged_models() -> list[str]:
    """Names of the models shipped inside the package."""
    return sorted(p.stem for p in PACKAGED_WEIGHTS.glob("*.safetensors"))


def _known_models() -> str:
    return ", ".join(sorted(set(HUB_REPOS) | set(packaged_models())))


def _holds_weights(folder: Path) -> bool:
    return any((folder / name).is_file() for name in FOLDER_WEIGHTS)


def find_weights(name: str) -> Path | None:
    """Weights of a model name already on this machine, or None; never touches the network.

    Looked for, in order: packaged; in ``$SEGGPT_VIDEO_WEIGHTS`` as ``<name>.safetensors``,
    the release's ``seggpt_vit_large.pth`` or a folder ``<name>/`` holding the weights; in the
    Hugging Face cache (``HF_HOME`` / ``HF_HUB_CACHE``) as a completed download of its repo.
    """
    packaged = PACKAGED_WEIGHTS / f"{name}.safetensors"
    if packaged.exists():
        return packaged
    local_dir = os.environ.get(WEIGHTS_DIR_ENV)
    if local_dir:
        folder = Path(local_dir)
        for candidate in (f"{name}.safetensors", f"{name.replace('-', '_')}.pth"):
            if (folder / candidate).is_file():
                return folder / candidate
        if _holds_weights(folder / name):
            return folder / name
    if name in HUB_REPOS:
        from huggingface_hub import try_to_load_from_cache

        # A download in progress sits under a temporary name: only completed files are found.
        weights = try_to_load_from_cache(HUB_REPOS[name], HUB_FILES[-1])
        config = try_to_load_from_cache(HUB_REPOS[name], HUB_FILES[0])
        if isinstance(weights, str) and isinstance(config, str):
            return Path(weights).parent
    return None


def resolve_model(name: str) -> Path:
    """Local weights for a model name (see :func:`find_weights`); never downloads.

    A known name whose weights are not here is an error that says how to get them
    (:func:`download_model`, ``seggpt-video download``).
    """
    found = find_weights(name)
    if found is not None:
        return found
    if name not in HUB_REPOS:
        raise UserError(
            f"{name}: unknown model name (known: {_known_models()}); or pass --checkpoint FILE"
        )
    raise UserError(
        f"{name}: weights not cached on this machine; get them with `seggpt-video download "
        f"{name}` (or put {name.replace('-', '_')}.pth in ${WEIGHTS_DIR_ENV}, or pass "
        "--checkpoint FILE)"
    )


def default_model() -> str:
    """The published model when its weights are on this machine, else the packaged one."""
    return PUBLISHED_MODEL if find_weights(PUBLISHED_MODEL) is not None else PACKAGED_MODEL


class DownloadError(UserError):
    """The hub could not deliver the weights (network, server, disk): the command was right."""


@dataclass(frozen=True)
class Download:
    """Where a model's weights are after :func:`download_model`.

    path: the weights (a file or folder that :func:`load_checkpoint` reads); fetched: whether
    anything came over the network (False: already here, or packaged).
    """

    name: str
    path: Path
    fetched: bool


def _download_reason(error: BaseException) -> str:
    """One line for a failed download: what went wrong underneath the hub's own wrapper."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    if isinstance(error, LocalEntryNotFoundError) and error.__cause__ is not None:
        error = error.__cause__  # "cannot locate the file on the Hub": the cause says why
    return _first_line(error).removesuffix(": None")  # an HTTP error without the hub's message


def download_destination(name: str, folder: str | Path | None = None) -> Path | None:
    """Where :func:`download_model` would put a published model; None: the Hugging Face cache.

    ``folder/<name>/``; with no folder ``$SEGGPT_VIDEO_WEIGHTS/<name>/`` when that is set.
    UserError when the download cannot start: an unknown name, a folder that is a file,
    huggingface_hub's offline mode (HF_HUB_OFFLINE).
    """
    if name not in HUB_REPOS:
        raise UserError(f"{name}: unknown model name (known: {_known_models()})")
    folder = folder if folder is not None else os.environ.get(WEIGHTS_DIR_ENV) or None
    target = None if folder is None else Path(folder) / name
    if target is not None and target.parent.exists() and not target.parent.is_dir():
        raise UserError(f"{target.parent}: not a folder (where to put the weights)")
    from huggingface_hub import constants

    if constants.is_offline_mode():
        raise UserError(
            f"{name}: cannot download with HF_HUB_OFFLINE set (unset it, or put the "
            f"{HUB_REPOS[name]} files in ${WEIGHTS_DIR_ENV}/{name}/)"
        )
    return target


def downloaded_weights(name: str, folder: str | Path | None = None) -> Path | None:
    """The weights :func:`download_model` would not fetch again, or None; no network.

    With no folder, anything :func:`find_weights` finds (packaged, ``$SEGGPT_VIDEO_WEIGHTS``,
    the Hugging Face cache); with one, a complete ``folder/<name>/``.
    """
    if folder is None or name not in HUB_REPOS:
        return find_weights(name)
    target = Path(folder) / name
    return target if all((target / file).is_file() for file in HUB_FILES) else None


def download_model(name: str, folder: str | Path | None = None) -> Download:
    """Fetch a published model's weights from the Hugging Face hub, unless already here.

    Into :func:`download_destination`: ``folder/<name>/``, ``$SEGGPT_VIDEO_WEIGHTS/<name>/``,
    or the Hugging Face cache; :func:`find_weights` looks in the last two. Files are fetched by
    huggingface_hub (``HF_ENDPOINT`` honoured), which writes each to a temporary name and
    renames it when complete: a complete file is not fetched again, a partial one never
    loaded. Its progress bar shows on a terminal. UserError when the download cannot start or
    the destination cannot be written; DownloadError when the hub, the network or the disk
    fails (trying again may help).
    """
    present = downloaded_weights(name, folder)
    if present is not None:
        return Download(name, present, fetched=False)
    target = download_destination(name, folder)
    repo = HUB_REPOS[name]
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.utils import logging as hub_logging

    verbosity = hub_logging.get_verbosity()
    hub_logging.set_verbosity_error()  # one line of ours instead of the hub's retry chatter
    try:
        with warnings.catch_warnings():
            # The hub checks free space before writing, but only warns; stop there instead.
            warnings.filterwarnings("error", message="Not enough free disk space")
            for file in HUB_FILES:  # the config first: complete weights mean a complete model
                path = hf_hub_download(repo, file, local_dir=target)
    except UserWarning as warning:
        raise DownloadError(f"{name}: {warning}") from None
    except PermissionError as error:
        raise UserError(
            f"{name}: cannot write the weights in {error.filename or target} ({error.strerror})"
        ) from None
    except Exception as error:  # whatever the hub or its HTTP client raises: one line
        raise DownloadError(
            f"{name}: download from {constants.ENDPOINT}/{repo} failed "
            f"({_download_reason(error)}); run the same command again to retry"
        ) from None
    finally:
        hub_logging.set_verbosity(verbosity)
    return Download(name, Path(path).parent, fetched=True)


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
