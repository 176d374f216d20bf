"""The Python API: ``load()`` a segmenter, then ``segment()`` a video or ``write()`` its outputs.

This is the front of the engine that every command calls: `run` is ``write()`` with a progress
bar, `batch` and `eval` call it per clip, the studio from a web request. ``segment()`` yields
frames lazily and writes nothing; ``write()`` writes what `run` writes (run.json, the resume
state, every output format), byte for byte.

    import seggpt_video
    segmenter = seggpt_video.load()                      # the CLI's defaults
    for frame in segmenter.segment("clip.mp4", masks={0: "first.png"}):
        frame.index, frame.image, frame.labels           # (H, W, 3) and (H, W) uint8
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from seggpt_video.clip import (
    SETTINGS_FILE,
    Clip,
    ImageInput,
    MaskInput,
    open_clip,
    prepare_output,
    run_settings,
    segment_clip,
)
from seggpt_video.engine import (
    SegmentedFrame,
    Segmenter,
    SegmenterOptions,
    check_options,
    default_memory,
)
from seggpt_video.errors import UserError
from seggpt_video.io.state import check_settings
from seggpt_video.pipeline import RunReport
from seggpt_video.refine import DEFAULT_REFINE

DEFAULT_FORMATS = ("davis", "overlay", "summary")
"""What `run` writes when no format is named."""
TASKS = ("instance", "semantic")
"""The release's two seg type tokens; instance is its default for video."""

Video = Path | str | Sequence[np.ndarray] | Iterable[np.ndarray]
Masks = Mapping[int, MaskInput] | Sequence[str]
Examples = Sequence[tuple[ImageInput, MaskInput]] | Sequence[str]


class VideoSegmenter:
    """A model with its propagation options; loads the model on first use.

    Built by :func:`load`. ``engine`` is the propagation engine (seggpt_video.engine.Segmenter)
    for callers that need the model itself.
    """

    def __init__(
        self,
        model: str | None = None,
        checkpoint: Path | str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        *,
        memory: int | None = None,
        batch_size: int = 1,
        ensemble: str = "feature",
        per_object: bool = False,
        refine: str = DEFAULT_REFINE,
        soft: bool = False,
        crops: str = "auto",
        task: str = "instance",
        prompt_file: Path | str | None = None,
    ) -> None:
        from seggpt_video import runtime
        from seggpt_video.predictor import model_name

        if task not in TASKS:
            raise UserError(f"task {task!r}: expected {' or '.join(TASKS)}")
        self._model, self._checkpoint = model, checkpoint
        self._device_name, self._dtype_request = device, dtype
        self.model_name = model_name(model, checkpoint)
        self.device = runtime.resolve_device(device)
        self.dtype_name = str(runtime.resolve_dtype(dtype, self.device)).removeprefix("torch.")
        self.task = task
        self.prompt_file = Path(prompt_file) if prompt_file is not None else None
        self.options = check_options(
            SegmenterOptions(
                memory=default_memory(self.model_name) if memory is None else memory,
                batch_size=batch_size,
                per_object=per_object,
                ensemble=str(getattr(ensemble, "value", ensemble)),
                refine=str(getattr(refine, "value", refine)),
                soft=soft,
                crops=str(getattr(crops, "value", crops)),
            )
        )
        self._engine: Segmenter | None = None

    @property
    def engine(self) -> Segmenter:
        """The propagation engine around the loaded model (loaded on the first call)."""
        if self._engine is None:
            from dataclasses import replace

            from seggpt_video.predictor import load_predictor

            predictor = load_predictor(
                model=self._model,
                checkpoint=self._checkpoint,
                device=self._device_name,
                dtype=self._dtype_request,
                seg_type=self.task,
            )
            extra = None
            if self.prompt_file is not None:
                from seggpt_video.training.tuning import load_tuned_prompt

                extra = load_tuned_prompt(self.prompt_file, predictor)
            self._engine = Segmenter(predictor, replace(self.options, extra_prompts=extra))
        return self._engine

    def open(
        self,
        video: Video,
        masks: Masks | None = None,
        examples: Examples | None = None,
        frames: str | tuple[int, int | None] | None = None,
        *,
        resize_mask: bool = False,
        backend: str = "auto",
    ) -> Clip:
        """Open a video with its masks and examples, every check made; no model needed.

        video: a video file, a frame folder, a list of (H, W, 3) uint8 frames or any iterable of
        them (read once, never held whole). masks: frame -> mask file or (H, W) uint8 ids (or
        the CLI's 'FRAME:FILE' strings). examples: (image, mask) pairs from outside the video,
        files or arrays (or 'IMAGE:MASK' strings). frames: (start, end) or 'START:END'.
        """
        return open_clip(video, masks, frames, resize_mask, backend, examples)

    def segment(
        self,
        video: Video | Clip,
        masks: Masks | None = None,
        examples: Examples | None = None,
        frames: str | tuple[int, int | None] | None = None,
        *,
        resize_mask: bool = False,
        backend: str = "auto",
    ) -> Iterator[SegmentedFrame]:
        """Segment every frame, lazily, in order; nothing is written.

        Arguments as :meth:`open` (or an opened clip). Yields frames with ``.index`` (within
        ``frames``), ``.image`` (H, W, 3) uint8, ``.labels`` (H, W) uint8 object ids and, with
        ``soft``, ``.alpha`` (1 + K, H, W) uint8 mattes. Bad input raises UserError here, before
        the first frame is asked for.
        """
        clip = video if isinstance(video, Clip) else self.open(
            video, masks, examples, frames, resize_mask=resize_mask, backend=backend
        )  # fmt: skip
        try:
            engine = self.engine
        except BaseException:
            clip.close()
            raise
        return _frames(clip, engine)

    def settings(self, clip: Clip) -> dict:
        """What run.json records for this clip with this segmenter (no model needed)."""
        return run_settings(clip, self, self.prompt_file)

    def check_output(self, clip: Clip, output: Path | str, overwrite: bool = False) -> None:
        """Refuse, before any model loads, a folder holding a run with other settings."""
        output = Path(output)
        prepare_output(output)
        check_settings(output / SETTINGS_FILE, self.settings(clip), overwrite)

    def write(
        self,
        video: Video | Clip,
        output: Path | str,
        formats: Sequence[str] = DEFAULT_FORMATS,
        masks: Masks | None = None,
        examples: Examples | None = None,
        frames: str | tuple[int, int | None] | None = None,
        *,
        overwrite: bool = False,
        restart_from: int | None = None,
        stream_object: int | None = None,
        on_frame: Callable[[SegmentedFrame], None] | None = None,
        resize_mask: bool = False,
        backend: str = "auto",
    ) -> RunReport:
        """What `run` does: segment into ``output`` (a folder, or '-' for the y4m stream).

        A re-run into the same folder resumes (the result equals an uninterrupted run); a
        folder with other settings is refused unless ``overwrite``. ``restart_from=N`` (a
        correction on frame N): frames from N on are recomputed, frames before it are read back
        as they are; change no annotation before N. ``on_frame`` sees every frame as it is
        written; an exception raised from it stops the run, keeping the finished frames.
        """
        from seggpt_video.io.writers import check_formats

        check_formats(formats)
        opened = not isinstance(video, Clip)
        clip = self.open(
            video, masks, examples, frames, resize_mask=resize_mask, backend=backend
        ) if opened else video  # fmt: skip
        try:
            settings = self.settings(clip)
            if str(output) != "-" and restart_from is None:
                # before the model loads (segment_clip records them after)
                prepare_output(Path(output))
                check_settings(Path(output) / SETTINGS_FILE, settings, overwrite)
            return segment_clip(
                clip,
                self.engine,
                output,
                list(formats),
                overwrite=overwrite,
                restart_from=restart_from,
                stream_object=stream_object,
                settings=settings,
                on_frame=on_frame,
            )
        finally:
            if opened:
                clip.close()


def _frames(clip: Clip, engine: Segmenter) -> Iterator[SegmentedFrame]:
    """The engine's frames for an opened clip, closing it when done or abandoned."""
    with clip:
        frames = (frame for _, frame in clip.source.iter_frames())
        yield from engine.propagate(frames, clip.annotations, examples=clip.examples)


def load(
    model: str | None = None,
    checkpoint: Path | str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    *,
    lazy: bool = False,
    **options,
) -> VideoSegmenter:
    """A segmenter with the CLI's choices and defaults.

    model: 'seggpt-tiny' (packaged) or 'seggpt-vit-large'; default: seggpt-vit-large when its
    weights are on this machine, else seggpt-tiny (said in one line on stderr). checkpoint: a
    weights file or folder instead. device: auto, cpu, cuda, cuda:N. dtype: auto, fp32, fp16,
    bf16. options: memory (default per model), batch_size, ensemble ('feature' | 'spatial'),
    per_object, refine ('guided' | 'none'), soft, crops ('auto' | 'on' | 'off': small objects
    on a window around them), task ('instance' | 'semantic'), prompt_file.
    lazy: load the model on first use instead of now (checks that need no model come first).
    """
    unknown = set(options) - {
        "memory", "batch_size", "ensemble", "per_object", "refine", "soft", "crops", "task",
        "prompt_file",
    }  # fmt: skip
    if unknown:
        raise TypeError(f"load() got unknown options: {', '.join(sorted(unknown))}")
    segmenter = VideoSegmenter(model, checkpoint, device, dtype, **options)
    if not lazy:
        segmenter.engine  # noqa: B018 - loads the model now, its errors here
    return segmenter
