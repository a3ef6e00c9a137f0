"""The texture signal of the fine maps: the network's blocks 1-3 run once over a whole layer (each
pixel standardised over its 128 px neighbourhood, as training patches were), CELL px a location,
against a memory of the build's first layers (nearest neighbour in their principal axes, PatchCore's
idea). Spatter, holes, streaks stand out of the powder they lie in. Reviewers' lessons (teaching.py)
add places called sound and confirmed defects' places to the memory.
"""

import logging
import threading
import time
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from slmcnn import aot, images
from slmcnn.aot import TEXTURE_STOPS
from slmcnn.thresholds import STRONG, tail_threshold, without_edge

log = logging.getLogger(__name__)

CELL = 8  # px of the bed per texture location: block 3's stride
LOCAL = 128  # px a pixel is standardised over (a training patch's side)
SPREAD_FLOOR = 0.5  # the spread a pixel is standardised by is at least this share of the layer's median
MEMORY = 4096  # texture locations a build keeps (greedy coreset of its first layers)
AXES = 64  # principal axes of the texture features the memory is searched in
PCA_SAMPLE = 20000  # first-layer places the axes are found from
CORESET_POOL = 16384  # first-layer places the memory's coreset is chosen from
EXAMPLE_RATIO = 2.0  # a place this many times nearer to a taught defect than to anything sound is Error
TAUGHT_PLACES = 2048  # most places one lesson adds to the memory
COMPILE_AFTER = 12  # layers a job reads before it has the texture compiled (a shorter one would not gain)
LOOK_EVERY = 5.0  # s between looks into the cache for the texture's package while it runs eager


def standardised_locally(image: np.ndarray, side: int = LOCAL) -> np.ndarray:
    """(H, W, 3) float32: each pixel minus the mean of its side x side neighbourhood, over its spread
    there (the reference's per-patch standardisation, per pixel)."""
    from slmcnn.preprocess import unit_scale

    x = image.astype(np.float32)
    x /= unit_scale(image)
    # the blur of the channels' mean is the mean of their blurs: one channel blurred, not three
    gray_mean = cv2.blur(images.gray(x), (side, side), borderType=cv2.BORDER_REFLECT)
    gray_square = cv2.blur(images.gray(x * x), (side, side), borderType=cv2.BORDER_REFLECT)
    spread = np.sqrt(np.maximum(gray_square - gray_mean**2, 0))
    # a flat, dark corner is not blown up to the grain of the rest: JPEG blocks there are no texture
    floor = max(SPREAD_FLOOR * float(np.median(spread)), 1.0 / (side * side * 3) ** 0.5)
    x -= gray_mean[..., None]  # in place: the same values, without two layer-sized temporaries (7.6 -> 2.9 ms)
    x /= np.maximum(spread, floor)[..., None]
    return x


class DenseTexture:
    """The network's blocks 1-3 over a whole layer: (H/CELL, W/CELL, D) texture features.

    On the CPU the blocks run compiled once aot's cache holds their package (3x eager's speed on a
    2-core EPYC, benchmarks/README.md), looked for every LOOK_EVERY s while it does not; a job that
    has read COMPILE_AFTER layers without one has it compiled in the background, once, for itself
    and the jobs after it."""

    def __init__(self, model: torch.nn.Module, precision: str = "auto", device: "str | torch.device" = "cpu"):
        from slmcnn.backends.pytorch import TorchBackend

        # the engine's maps come from the folded network, whose block outputs are the model's up to a
        # positive scale and shift per channel, which the memory's standardisation per feature takes
        # out: the same texture, faster
        self.network = TorchBackend(model, precision, device=device)
        self.compiled = None  # the blocks' package, once found
        self.layers, self._looked, self._spawned = 0, -float("inf"), False
        self._lock = threading.Lock()  # one package run at a time (the decoding pool's and a lesson's)

    @torch.inference_mode()
    def __call__(self, image: np.ndarray) -> np.ndarray:
        standardised = standardised_locally(image)  # outside the lock: the pool's threads overlap it
        with self._lock:
            self.layers += 1
            compiled = self._package() if min(image.shape[:2]) >= aot.MIN_SIDE else None
            try:
                mid, deep = self.network.dense_maps(standardised, TEXTURE_STOPS, compiled)
            except Exception as exc:  # a package that fails at run time: eager from now on, never again
                if compiled is None:
                    raise
                log.warning("the compiled texture failed (%s: %s); eager PyTorch from now on", type(exc).__name__, exc)
                self.compiled, self._looked = None, float("inf")  # never looked for again
                mid, deep = self.network.dense_maps(standardised, TEXTURE_STOPS)
        maps = torch.cat([F.avg_pool2d(mid, 2, ceil_mode=True)[..., : deep.shape[2], : deep.shape[3]], deep], 1)
        maps = F.avg_pool2d(maps, 3, 1, 1, count_include_pad=False)
        return maps[0].permute(1, 2, 0).contiguous().cpu().numpy()

    def _package(self):
        """The blocks' compiled package from the cache, or None while there is none (eager)."""
        if self.compiled is not None or self.network.device.type != "cpu":
            return self.compiled
        if time.monotonic() - self._looked < LOOK_EVERY:
            return None
        self._looked = time.monotonic()
        model, precision = self.network.model, self.network.precision
        path = aot.cached(model, precision, stops=TEXTURE_STOPS)
        if path is not None:
            try:
                self.compiled = aot.load_outputs(path)
                log.info("the fine maps' texture runs compiled")
            except Exception as exc:  # another torch build's, or damaged: compiled again
                log.warning(
                    "the compiled texture does not load (%s: %s); it will be compiled again", type(exc).__name__, exc
                )
                aot.forget(path)
        elif not self._spawned and self.layers >= COMPILE_AFTER and aot.compiling_allowed():
            self._spawned = True
            aot.spawn_compile(model, precision, detach=True, stops=TEXTURE_STOPS)
        return self.compiled


class TextureMemory:
    """What the build's sound places look like (PatchCore over texture locations): a location's
    score is its distance to the nearest memory entry over the threshold."""

    def __init__(self, layers: list[np.ndarray], keep: list[np.ndarray], size: int = MEMORY):
        from slmcnn.profile.features import greedy_coreset

        flat = [f.reshape(-1, f.shape[-1])[k.ravel()] for f, k in zip(layers, keep, strict=True)]
        owner = np.concatenate([np.full(len(f), i) for i, f in enumerate(flat)])
        raw = np.concatenate(flat)
        self.mean = raw.mean(0)
        self.scale = raw.std(0) + 1e-3 * float(raw.std(0).mean()) + 1e-6
        # the principal axes of the standardised features: the nearest-neighbour search, most of a
        # layer's cost, runs in AXES dimensions instead of all
        sample = (raw[np.random.default_rng(0).permutation(len(raw))[:PCA_SAMPLE]] - self.mean) / self.scale
        self.axes = np.linalg.svd(sample, full_matrices=False)[2][:AXES].T.astype(np.float32)
        self.mean, self.scale = self.mean.astype(np.float32), self.scale.astype(np.float32)
        # standardising and turning onto the axes as one affine map: one product a layer
        self._weight = torch.from_numpy(np.ascontiguousarray((self.axes / self.scale[:, None]).T))
        self._bias = torch.from_numpy(-(self.mean / self.scale) @ self.axes)
        points = self.project(raw)
        # the coreset is chosen from a random CORESET_POOL of the places (k-centre greedy costs a
        # pass over its pool per entry; the pool still holds every kind of place many times)
        pool = np.random.default_rng(1).permutation(len(points))[:CORESET_POOL]
        chosen = pool[greedy_coreset(torch.from_numpy(np.ascontiguousarray(points[pool], np.float32)), size).numpy()]
        self.memory, owner = np.ascontiguousarray(points[chosen], np.float32), owner[chosen]
        left_out, typical = [], []
        for i, f in enumerate(layers):
            others = self.memory[owner != i]
            if len(others):
                distance = self._distance(f, others)
                left_out.append(distance.ravel())
                typical.append(float(np.median(distance)))
        places = layers[0].shape[0] * layers[0].shape[1]
        self.threshold = tail_threshold(np.concatenate(left_out), places) if left_out else float("inf")
        self.typical = float(np.median(typical)) if typical else 0.0
        self.sound: list[Taught] = []
        self.examples: list[Taught] = []

    def project(self, features: np.ndarray) -> np.ndarray:
        """(..., D) features -> (N, AXES) points of the memory's space (oneDNN's product where
        PyTorch has it: 0.8 against 6.4 ms a 768 px layer in numpy)."""
        from slmcnn.profile.features import fused_product

        rows = torch.from_numpy(np.ascontiguousarray(features.reshape(-1, features.shape[-1]), np.float32))
        return fused_product()(rows, self._weight, self._bias).numpy()

    def _distance(self, features: np.ndarray, memory: np.ndarray) -> np.ndarray:
        from slmcnn.profile.features import nearest_distance

        return nearest_distance(self.project(features), memory).reshape(features.shape[:2])

    def teach(self, sound: list["Taught"], examples: list["Taught"]) -> None:
        """Reviewers' lessons (teaching): places called sound, and confirmed defects' places that
        a place is Error for looking like."""
        self.sound, self.examples = sound, examples

    def search(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(points in the memory's space, (H, W) distance of each to the nearest memory entry): most
        of a layer's cost, made in any thread (`score` takes it from the decoding pool)."""
        from slmcnn.profile.features import nearest_distance

        points = self.project(features)
        return points, nearest_distance(points, self.memory).reshape(features.shape[:2])

    def score(self, features: np.ndarray | None, searched: tuple | None = None) -> tuple[np.ndarray, np.ndarray]:
        """`searched`: what `search` gave for these features, if it was made ahead (the features
        are then not needed). Distance over the threshold (none along the bed's edge), raised by the layer's level: a layer farther from the
        first ones as a whole (grainier after a gain change) has changed its look, not grown a
        defect everywhere (the camera profile's rule, measured on PBLM's grainier good photos).
        A place within a sound lesson's reach scores its distance over that reach instead (under
        1); a place the memory found unusual that is EXAMPLE_RATIO times nearer to the lesson than
        to the memory (the lesson's look, not plain powder) is taught sound: a change to that look
        is no defect. A place EXAMPLE_RATIO times nearer to a confirmed defect (within its reach)
        than to anything sound scores that ratio over EXAMPLE_RATIO: over 1."""
        from slmcnn.profile.features import nearest_distance

        points, distance = searched if searched is not None else self.search(features)
        shape = distance.shape
        level = max(1.0, float(np.median(distance)) / self.typical) if self.typical > 0 else 1.0
        score = distance / (self.threshold * level)
        taught_sound, nearest_sound, unusual = np.zeros(shape, bool), distance, score > 1
        for lesson in self.sound:  # (nearest_sound: to_sound's, from the distances at hand)
            to_lesson = nearest_distance(points, lesson.points).reshape(shape)
            score = np.minimum(score, to_lesson / lesson.reach)
            taught_sound |= unusual & (to_lesson < lesson.reach) & (to_lesson * EXAMPLE_RATIO < distance)
            nearest_sound = np.minimum(nearest_sound, to_lesson)
        for lesson in self.examples:
            to_lesson = nearest_distance(points, lesson.points).reshape(shape)
            ratio = nearest_sound / np.maximum(to_lesson, 1e-6) / EXAMPLE_RATIO
            score = np.maximum(score, np.where(to_lesson <= lesson.reach, ratio, 0))
        return without_edge(score.astype(np.float32), CELL), taught_sound

    def to_sound(self, points: np.ndarray) -> np.ndarray:
        """Each point's distance to the nearest sound place: the memory's or a sound lesson's."""
        from slmcnn.profile.features import nearest_distance

        distance = nearest_distance(points, self.memory)
        for lesson in self.sound:
            distance = np.minimum(distance, nearest_distance(points, lesson.points))
        return distance


@dataclass
class Taught:
    """One lesson in a texture memory's space: its places, and its reach: how far the same look
    strays when it falls on the CELL px grid at another phase (between the threshold and STRONG
    times it)."""

    points: np.ndarray  # (N, AXES) float32
    reach: float

    @classmethod
    def of(cls, phases: list[np.ndarray], threshold: float) -> "Taught":
        from slmcnn.profile.features import nearest_distance

        strays = [
            nearest_distance(p, np.concatenate([q for j, q in enumerate(phases) if j != i]))
            for i, p in enumerate(phases)
            if len(p) and sum(len(q) for j, q in enumerate(phases) if j != i)
        ]
        reach = float(np.quantile(np.concatenate(strays), 0.95)) if strays else 0.0
        points = np.concatenate(phases)
        points = points[np.random.default_rng(2).permutation(len(points))[:TAUGHT_PLACES]]
        return cls(np.ascontiguousarray(points, np.float32), float(np.clip(reach, threshold, STRONG * threshold)))
