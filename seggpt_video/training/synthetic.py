"""Synthetic video scenes: textured shapes moving over a textured, panning background.

A scene is a handful of random numbers; :func:`render` draws it at any time ``t`` in [0, 1], so a
training pair is two renders of one scene and a clip is many. Objects move, rotate, grow or
shrink and pass in front of each other (fixed depth order), so the second frame of a pair shows
the same objects moved, scaled and occluded. Textures live in each object's own coordinates and
move with it, which is what makes an object recognisable from frame to frame.

Everything is numpy, vectorised over pixels, and deterministic given the seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SHAPES = ("ellipse", "rectangle", "triangle", "star")
PATTERNS = ("noise", "stripes", "checker")


@dataclass(frozen=True)
class Texture:
    """A two-colour pattern in texture coordinates (units: object radii, or frame sides)."""

    pattern: str
    colours: np.ndarray  # (2, 3) float 0..255
    frequency: float  # cycles per unit
    angle: float  # radians, for stripes
    noise: np.ndarray  # (8, 8) float 0..1, a periodic lattice for the noise pattern

    def sample(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Colour at texture coordinates u, v (any equal shapes) -> (..., 3) float 0..255."""
        if self.pattern == "stripes":
            phase = u * np.cos(self.angle) + v * np.sin(self.angle)
            weight = 0.5 + 0.5 * np.sin(2 * np.pi * self.frequency * phase)
        elif self.pattern == "checker":
            cells = np.floor(u * self.frequency) + np.floor(v * self.frequency)
            weight = (cells % 2).astype(np.float32)
        else:
            weight = _bilinear_periodic(self.noise, u * self.frequency, v * self.frequency)
        weight = weight[..., None]
        return self.colours[0] * (1 - weight) + self.colours[1] * weight


def _bilinear_periodic(lattice: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Smooth value noise: bilinear interpolation of a periodic (n, n) lattice at (u, v)."""
    n = lattice.shape[0]
    u0, v0 = np.floor(u), np.floor(v)
    fu, fv = u - u0, v - v0
    i0, j0 = u0.astype(np.int64) % n, v0.astype(np.int64) % n
    i1, j1 = (i0 + 1) % n, (j0 + 1) % n
    top = lattice[j0, i0] * (1 - fu) + lattice[j0, i1] * fu
    bottom = lattice[j1, i0] * (1 - fu) + lattice[j1, i1] * fu
    return top * (1 - fv) + bottom * fv


@dataclass(frozen=True)
class SceneObject:
    """One moving object; positions are in frame units (0..1 across), time t in [0, 1]."""

    shape: str
    texture: Texture
    start: np.ndarray  # (2,) centre (x, y) at t = 0
    velocity: np.ndarray  # (2,) displacement over the whole clip
    radius: float  # at t = 0, fraction of the frame side
    growth: float  # radius(t) = radius * (1 + growth * t)
    aspect: float  # height / width of the shape
    angle: float  # rotation at t = 0, radians
    spin: float  # rotation over the whole clip, radians
    star_phase: float

    @property
    def shape_class(self) -> int:
        """Semantic class of the object (its shape), 1-based."""
        return SHAPES.index(self.shape) + 1

    def local_coordinates(
        self, t: float, x: np.ndarray, y: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Frame coordinates -> the object's own (u, v), in radii, rotated with it."""
        centre = self.start + self.velocity * t
        radius = self.radius * (1 + self.growth * t)
        angle = self.angle + self.spin * t
        dx, dy = (x - centre[0]) / radius, (y - centre[1]) / radius
        cos, sin = np.cos(angle), np.sin(angle)
        return dx * cos + dy * sin, (-dx * sin + dy * cos) / self.aspect

    def inside(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Which local coordinates fall inside the shape: bool, same shape as u."""
        if self.shape == "ellipse":
            return u * u + v * v <= 1
        if self.shape == "rectangle":
            return (np.abs(u) <= 0.85) & (np.abs(v) <= 0.85)
        if self.shape == "triangle":
            # Three half-planes whose normals are 120 degrees apart.
            normals = np.array([[0.0, -1.0], [0.866, 0.5], [-0.866, 0.5]])
            return np.all(u[..., None] * normals[:, 0] + v[..., None] * normals[:, 1] <= 0.55, -1)
        theta = np.arctan2(v, u)
        return np.hypot(u, v) <= 0.75 + 0.3 * np.cos(5 * theta + self.star_phase)


@dataclass(frozen=True)
class Scene:
    """Background, objects (back to front) and the camera's pan over the clip."""

    background: Texture
    pan: np.ndarray  # (2,) background offset over the whole clip, frame units
    zoom: float  # background scale change over the clip
    objects: tuple[SceneObject, ...]
    brightness: np.ndarray  # (2,) global gain at t = 0 and t = 1


def random_texture(rng: np.random.Generator, low: float, high: float) -> Texture:
    """A random two-colour texture; frequency in cycles per unit between low and high."""
    colours = rng.uniform(0, 255, size=(2, 3))
    if rng.random() < 0.3:  # sometimes nearly flat, so colour alone must do
        colours[1] = np.clip(colours[0] + rng.normal(0, 20, 3), 0, 255)
    return Texture(
        pattern=PATTERNS[rng.integers(len(PATTERNS))],
        colours=colours.astype(np.float32),
        frequency=float(rng.uniform(low, high)),
        angle=float(rng.uniform(0, np.pi)),
        noise=rng.random((8, 8)).astype(np.float32),
    )


def random_scene(rng: np.random.Generator, num_objects: int, motion: float = 1.0) -> Scene:
    """A random scene with ``num_objects`` objects; ``motion`` scales how far things move."""
    objects = []
    for _ in range(num_objects):
        start = rng.uniform(0.2, 0.8, size=2)
        # Aim roughly across the frame, so objects cross each other and occlude.
        target = rng.uniform(0.15, 0.85, size=2)
        objects.append(
            SceneObject(
                shape=SHAPES[rng.integers(len(SHAPES))],
                texture=random_texture(rng, 0.8, 3.0),
                start=start,
                velocity=(target - start) * motion,
                radius=float(rng.uniform(0.08, 0.22)),
                growth=float(rng.uniform(-0.45, 0.8) * motion),
                aspect=float(np.exp(rng.uniform(-0.5, 0.5))),
                angle=float(rng.uniform(0, 2 * np.pi)),
                spin=float(rng.normal(0, 1.0) * motion),
                star_phase=float(rng.uniform(0, 2 * np.pi)),
            )
        )
    return Scene(
        background=random_texture(rng, 1.5, 8.0),
        pan=rng.normal(0, 0.25, size=2) * motion,
        zoom=float(rng.uniform(-0.2, 0.2) * motion),
        objects=tuple(objects),
        brightness=rng.uniform(0.8, 1.15, size=2),
    )


def render(
    scene: Scene, t: float, height: int, width: int, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Draw the scene at time t: image (H, W, 3) uint8 and object ids (H, W) uint8 (0 = background).

    Object k of ``scene.objects`` (back to front) has id k + 1. ``rng`` adds sensor noise.
    """
    side = max(height, width)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    x, y = (x + 0.5) / side, (y + 0.5) / side
    zoom = 1 + scene.zoom * t
    image = scene.background.sample(
        (x - 0.5) / zoom + scene.pan[0] * t, (y - 0.5) / zoom + scene.pan[1] * t
    )
    labels = np.zeros((height, width), dtype=np.uint8)
    for index, obj in enumerate(scene.objects):
        u, v = obj.local_coordinates(t, x, y)
        inside = obj.inside(u, v)
        image[inside] = obj.texture.sample(u[inside], v[inside])
        labels[inside] = index + 1
    gain = scene.brightness[0] + (scene.brightness[1] - scene.brightness[0]) * t
    image = image * gain
    if rng is not None:
        image = image + rng.normal(0, 4, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), labels


def make_clip(
    seed: int,
    num_frames: int = 40,
    height: int = 96,
    width: int = 96,
    num_objects: int = 2,
    motion: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """A whole synthetic clip: frames (T, H, W, 3) uint8 and object ids (T, H, W) uint8.

    Every object is visible in the first frame (it is the one a user would annotate).
    """
    rng = np.random.default_rng(seed)
    while True:
        scene = random_scene(rng, num_objects, motion)
        _, first = render(scene, 0.0, height, width)
        if all((first == k + 1).sum() >= 0.004 * height * width for k in range(num_objects)):
            break
    frames, labels = [], []
    for i in range(num_frames):
        t = i / max(num_frames - 1, 1)
        image, ids = render(scene, t, height, width, rng)
        frames.append(image)
        labels.append(ids)
    return np.stack(frames), np.stack(labels)
