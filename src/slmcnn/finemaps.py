"""Fine maps: Powder / Object / Error per pixel of the straightened bed, and the anomaly behind it.

A 128 px tile is 40 mm of bed on a common camera: a 3 mm spot painted as a tile is a 40 mm square.
The tile network still decides *what* a layer holds; two signals measured on real cameras decide
*where* (shared/reference/finding-defects-notes.md):

- texture: the network's blocks 2 and 3 run once over the whole layer (each pixel standardised over
  its 128 px neighbourhood, as training patches were), CELL px a location, against a memory of the
  build's first layers (nearest neighbour, PatchCore's idea). Spatter, holes, streaks stand out of
  the powder they lie in.
- change: the bed blurred and divided by its median, against the median of the build's last
  CHANGE_WINDOW layers at the same place, in units of their spread. A part breaking through the
  powder, a short feed, a part showing where powder should cover are dark and rough like texture
  seen elsewhere, but new *at that place*.

Each signal's threshold comes from the build's own first layers: their places scored against the
other first layers (leave-one-out), an exponential tail fitted to those scores, the threshold where
it expects FALSE_PLACES places over it per sound layer (the camera profile's rule); a score of 1 is
that threshold. What decides a pixel:
- Error where either signal is over 1 (after exposure, on a part's place only by texture over
  STRONG: parts are normal then);
- the network's sure Error tiles (SURE_ERROR), narrowed to what stands out in them (a spot, or a
  faint line averaged along its length); all of the tile where nothing does. Such a tile is hidden
  only where the network was as sure there on most first layers *and* both signals say the whole
  tile looks as it did: the memory never hides what the network sees clearly;
- the network's unsure Error tiles only where a signal confirms them (over LOOKS_SAME);
- Object: the network's Object tiles narrowed to what differs from the powder around them.
A place called Error is never learned. Measured in benchmarks/bench_maps.py.
"""

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from slmcnn import aot, images
from slmcnn.aot import TEXTURE_STOPS
from slmcnn.constants import ERROR, OBJECT, PHOTOS, POWDER, SURE_ERROR
from slmcnn.errors import SettingsError, SlmcnnError
from slmcnn.labels import NOT_A_CLASS_PIXEL
from slmcnn.regions import MIN_AREA, DefectRegion, find_regions
from slmcnn.teaching import Lessons
from slmcnn.tiles import tile_mask, tile_values

log = logging.getLogger(__name__)

CELL = 8  # px of the bed per texture location: block 3's stride
LOCAL = 128  # px a pixel is standardised over (a training patch's side)
SPREAD_FLOOR = 0.5  # the spread a pixel is standardised by is at least this share of the layer's median
MEMORY = 4096  # texture locations a build keeps (greedy coreset of its first layers)
AXES = 64  # principal axes of the texture features the memory is searched in
PCA_SAMPLE = 20000  # first-layer places the axes are found from
CORESET_POOL = 16384  # first-layer places the memory's coreset is chosen from
LEARN = 5  # first layers of a build that teach it
MIN_LEARNED = 256  # sound texture locations the first layers must hold (else the next layers teach too)
CHANGE_WINDOW = 10  # last layers the change signal compares a layer with
CHANGE_SIGMA = 3.0  # px of blur before comparing: grain is not change
CHANGE_STEP = 4  # px per change location
CHANGE_FLOOR = 0.02  # smallest per-place spread, as a share of the bed's brightness
BED_EDGE = 16  # px along the bed's edge the signals leave out: it moves with the straightening
FALSE_PLACES = 0.002  # expected places over a signal's threshold per sound layer (tail fit, profile.decision)
SURE = SURE_ERROR  # a network Error this sure stays unless its place looked so on the first layers
LOOKS_SAME = 0.5  # "as before": both signals under this share of their thresholds over the whole tile
SALIENT = 4.0  # robust deviations from the local powder that make a pixel part of an Error or Object
SALIENT_SURE = 2.5  # the same within a tile the network is sure of Error: something is there
GRAIN_RATIO = 2.0  # ... if more of the tile's pixels pass it than this many times the powder's do
LINE = 32  # px a faint line is averaged along before it is compared with the grain
STRONG = 2.0  # a signal this far over its threshold is Error where the photo shows nothing, or on a part's place after exposure
EXPOSED_OBJECT_SHARE = 0.08  # auto: first layers with this share of Object tiles were taken after exposure
EXAMPLE_RATIO = 2.0  # a place this many times nearer to a taught defect than to anything sound is Error
EXAMPLE_FLOOR = 0.5  # a taught defect's places that are examples: those this far (of the threshold) from sound
TAUGHT_PLACES = 2048  # most places one lesson adds to the memory
COMPILE_AFTER = 12  # layers a job reads before it has the texture compiled (a shorter one would not gain)
LOOK_EVERY = 5.0  # s between looks into the cache for the texture's package while it runs eager


@dataclass
class FineMaps:
    """One layer's fine maps: classes per pixel, the two anomaly signals (1 = threshold) per
    location, the regions of Error, and the state of the build's memory when it was judged."""

    classes: np.ndarray  # (H, W) uint8: 0 Powder, 1 Object, 2 Error (NOT_A_CLASS_PIXEL ignored)
    texture: np.ndarray | None  # (H / CELL, W / CELL) float32, None while the build is learning
    change: np.ndarray | None  # (H / CHANGE_STEP, W / CHANGE_STEP) float32, None while learning
    regions: list[DefectRegion] = field(default_factory=list)
    state: str = "learning"  # "learning" (one of the build's first layers) or "judged"
    photo: str = "auto"  # the kind of photo the build's layers were taken as

    def to_json(self) -> dict:
        height, width = self.classes.shape
        return {
            "frame": "straightened bed",
            "width": width,
            "height": height,
            "cell": CELL,
            "state": self.state,
            "photo": self.photo,
            "texture_max": None if self.texture is None else round(float(self.texture.max()), 4),
            "change_max": None if self.change is None else round(float(self.change.max()), 4),
        }


def standardised_locally(image: np.ndarray, side: int = LOCAL) -> np.ndarray:
    """(H, W, 3) float32: each pixel minus the mean of its side x side neighbourhood, over its spread
    there (the reference's per-patch standardisation, per pixel)."""
    from slmcnn.preprocess import unit_scale

    x = image.astype(np.float32) / unit_scale(image)
    # the blur of the channels' mean is the mean of their blurs: one channel blurred, not three
    gray_mean = cv2.blur(images.gray(x), (side, side), borderType=cv2.BORDER_REFLECT)
    gray_square = cv2.blur(images.gray(x * x), (side, side), borderType=cv2.BORDER_REFLECT)
    spread = np.sqrt(np.maximum(gray_square - gray_mean**2, 0))
    # a flat, dark corner is not blown up to the grain of the rest: JPEG blocks there are no texture
    floor = max(SPREAD_FLOOR * float(np.median(spread)), 1.0 / (side * side * 3) ** 0.5)
    return (x - gray_mean[..., None]) / np.maximum(spread, floor)[..., None]


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
        self._lock = threading.Lock()  # one package run at a time (the network thread's and a lesson's)

    @torch.inference_mode()
    def __call__(self, image: np.ndarray) -> np.ndarray:
        with self._lock:
            self.layers += 1
            compiled = self._package() if min(image.shape[:2]) >= aot.MIN_SIDE else None
            standardised = standardised_locally(image)
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


def without_edge(scores: np.ndarray, step: int) -> np.ndarray:
    """`scores` (step px a place) with the places within BED_EDGE px of the bed's edge set to 0:
    the edge moves with the straightening, and convolutions see padding there."""
    edge = -(-BED_EDGE // step)
    scores[:edge], scores[-edge:], scores[:, :edge], scores[:, -edge:] = 0, 0, 0, 0
    return scores


def tail_threshold(left_out: np.ndarray, places: int) -> float:
    """Where an exponential tail fitted to the first layers' left-out scores (its mean excess at its
    upper 95% bound: few layers, an uncertain tail) expects FALSE_PLACES places over it per layer
    of `places`: the camera profile's rule (profile.decision.tail_fit), per place instead of per tile.
    Not their largest score: a defect on a first layer would set it."""
    from slmcnn.profile.decision import tail_fit

    u, q, beta = tail_fit(left_out)
    return u + beta * np.log(max(q * places / FALSE_PLACES, 1.0))


class TextureMemory:
    """What the build's sound places look like (PatchCore over texture locations): a location's
    score is its distance to the nearest memory entry over the threshold."""

    def __init__(self, layers: list[np.ndarray], keep: list[np.ndarray], size: int = MEMORY):
        from slmcnn.profile.features import greedy_coreset

        flat = [f.reshape(-1, f.shape[-1])[k.ravel()] for f, k in zip(layers, keep, strict=True)]
        owner = np.concatenate([np.full(len(f), i) for i, f in enumerate(flat)])
        points = np.concatenate(flat)
        self.mean = points.mean(0)
        self.scale = points.std(0) + 1e-3 * float(points.std(0).mean()) + 1e-6
        points = (points - self.mean) / self.scale
        # the principal axes of the standardised features: the nearest-neighbour search, most of a
        # layer's cost, runs in AXES dimensions instead of all
        sample = points[np.random.default_rng(0).permutation(len(points))[:PCA_SAMPLE]]
        self.axes = np.linalg.svd(sample, full_matrices=False)[2][:AXES].T.astype(np.float32)
        self.mean, self.scale = self.mean.astype(np.float32), self.scale.astype(np.float32)
        points = points @ self.axes
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
        """(..., D) features -> (N, AXES) points of the memory's space."""
        d = features.shape[-1]
        return np.ascontiguousarray(((features.reshape(-1, d) - self.mean) / self.scale) @ self.axes, np.float32)

    def _distance(self, features: np.ndarray, memory: np.ndarray) -> np.ndarray:
        from slmcnn.profile.features import nearest_distance

        return nearest_distance(self.project(features), memory).reshape(features.shape[:2])

    def teach(self, sound: list["Taught"], examples: list["Taught"]) -> None:
        """Reviewers' lessons (teaching): places called sound, and confirmed defects' places that
        a place is Error for looking like."""
        self.sound, self.examples = sound, examples

    def score(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distance over the threshold (none along the bed's edge), raised by the layer's level: a layer farther from the
        first ones as a whole (grainier after a gain change) has changed its look, not grown a
        defect everywhere (the camera profile's rule, measured on PBLM's grainier good photos).
        A place within a sound lesson's reach scores its distance over that reach instead (under
        1); a place the memory found unusual that is EXAMPLE_RATIO times nearer to the lesson than
        to the memory (the lesson's look, not plain powder) is taught sound: a change to that look
        is no defect. A place EXAMPLE_RATIO times nearer to a confirmed defect (within its reach)
        than to anything sound scores that ratio over EXAMPLE_RATIO: over 1."""
        from slmcnn.profile.features import nearest_distance

        points, shape = self.project(features), features.shape[:2]
        distance = nearest_distance(points, self.memory).reshape(shape)
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


def change_image(image: np.ndarray) -> np.ndarray:
    """The bed as the change signal compares it: gray, blurred, over its median, CHANGE_STEP px a place."""
    gray = cv2.GaussianBlur(images.gray(image), (0, 0), CHANGE_SIGMA)
    gray /= max(float(np.median(gray)), 1e-3)
    h, w = gray.shape
    return cv2.resize(gray, (max(w // CHANGE_STEP, 1), max(h // CHANGE_STEP, 1)), interpolation=cv2.INTER_AREA)


def layer_median(stack: np.ndarray) -> np.ndarray:
    """np.median(stack, 0) of a few layers, sorted along them instead: the same values, 3x faster."""
    ordered = np.sort(stack, 0)
    return (ordered[(len(stack) - 1) // 2] + ordered[len(stack) // 2]) / 2


class ChangeMemory:
    """The build's last layers at each place: a layer's score is its distance from their median in
    units of their spread, over the threshold fitted on the first layers."""

    def __init__(self):
        self.layers: list[np.ndarray] = []
        self.threshold = float("inf")

    def raw(self, bed: np.ndarray, without: int | None = None) -> np.ndarray:
        stack = np.stack([b for i, b in enumerate(self.layers) if i != without])
        median = layer_median(stack)
        spread = 1.4826 * layer_median(np.abs(stack - median))
        return without_edge(np.abs(bed - median) / np.maximum(spread, CHANGE_FLOOR), CHANGE_STEP)

    def fit(self) -> None:
        """Threshold: a tail fitted to the left-out scores of the layers held (each against the others)."""
        if len(self.layers) < 3:
            return
        scores = np.concatenate([self.raw(b, without=i).ravel() for i, b in enumerate(self.layers)])
        self.threshold = tail_threshold(scores, self.layers[0].size)

    def score(self, bed: np.ndarray) -> np.ndarray:
        """0 everywhere while fewer than 3 layers of this size are held (a photo of another size)."""
        if len(self.layers) < 3 or self.layers[0].shape != bed.shape:
            return np.zeros(bed.shape, np.float32)
        return (self.raw(bed) / self.threshold).astype(np.float32)

    def add(self, bed: np.ndarray, flagged: np.ndarray | None = None) -> None:
        """Remember a layer; its flagged places keep the median they had (a defect never becomes
        normal). A layer of another size starts the memory again."""
        if self.layers and self.layers[0].shape != bed.shape:
            self.layers = []
        if flagged is not None and flagged.any() and self.layers:
            bed = np.where(flagged, layer_median(np.stack(self.layers)), bed)
        self.layers = [*self.layers, bed][-CHANGE_WINDOW:]


def salient(image: np.ndarray, powder: np.ndarray) -> np.ndarray:
    """(H, W) robust deviations of each pixel from the powder level around it: the level is the
    blurred brightness of the `powder` pixels (the network's Powder tiles) nearby, so a large part
    stands out of it as a whole, not only at its edges."""
    gray = images.gray(image)
    small = cv2.resize(cv2.GaussianBlur(gray, (0, 0), 1.5), None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA)
    weight = cv2.resize(powder.astype(np.float32), small.shape[::-1], interpolation=cv2.INTER_AREA)
    if weight.sum() < 0.05 * weight.size:  # hardly any powder: the layer's own median level
        weight = np.ones_like(weight)
    sigma = LOCAL / 16
    level = cv2.GaussianBlur(small * weight, (0, 0), sigma) / (cv2.GaussianBlur(weight, (0, 0), sigma) + 1e-6)
    deviation = small - level
    powder_only = weight > 0.5 if (weight > 0.5).any() else np.ones(weight.shape, bool)
    noise = 1.4826 * float(np.median(np.abs(deviation[powder_only]))) + 1e-3
    out = np.abs(deviation) / noise
    # a faint line along either axis, averaged along its length (grain is not); clipped first, so
    # that one strong spot does not smear along the axes
    clipped = np.clip(deviation, -2 * noise, 2 * noise)
    for kernel in ((1, LINE // 4), (LINE // 4, 1)):
        along = cv2.blur(clipped, kernel)
        line_noise = 1.4826 * float(np.median(np.abs(along[powder_only]))) + 1e-3
        out = np.maximum(out, np.abs(along) / line_noise)
    return upsample(out, gray.shape)


def delineate(found: np.ndarray, standing: np.ndarray, strength: np.ndarray | None = None) -> np.ndarray:
    """Each connected area of `found` narrowed to its pixels that stand out (and 2 px round them)
    where it has any: a signal finds a defect at its own coarse scale, the photo shows its outline.
    With `strength`, an area where nothing stands out is kept only where it exceeds STRONG."""
    count, labels = cv2.connectedComponents(found.astype(np.uint8), connectivity=8)
    if count <= 1:
        return found
    outlined = np.bincount(labels[standing & found], minlength=count) > 0
    near = cv2.dilate(standing.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    unseen = found & ~outlined[labels]
    if strength is not None:
        peak = np.zeros(count, np.float32)
        np.maximum.at(peak, labels[found], strength[found])
        unseen &= (peak > STRONG)[labels]
    return (found & outlined[labels] & near) | unseen


def upsample(cells: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return cv2.resize(cells, shape[::-1], interpolation=cv2.INTER_LINEAR)


@dataclass
class Seen:
    """What the fine maps read of a photo before its tiles are known: its texture and its bed as the
    change signal compares it. Made by `FineMapper.see` in any thread (the Predictor's network
    thread makes it for the next layer while this one is mapped)."""

    features: np.ndarray  # (H / CELL, W / CELL, D) texture features
    bed: np.ndarray  # change_image


class FineMapper:
    """Fine maps of one build's layers, in layer order; `new_build` starts the next build."""

    def __init__(
        self,
        model: torch.nn.Module,
        learn: int = LEARN,
        photo: str = "auto",
        recoater: str = "vertical",
        mm_per_pixel: float | None = None,
        precision: str = "auto",
        lessons: Lessons | None = None,
        device: "str | torch.device" = "cpu",
    ):
        if photo not in PHOTOS:
            raise SettingsError(f"`photo` must be one of {', '.join(PHOTOS)} (got {photo!r})")
        if not isinstance(learn, int) or isinstance(learn, bool) or learn < 3:
            raise SettingsError(f"the fine maps learn from at least 3 first layers of a build (got {learn!r})")
        self.texture_net = DenseTexture(model, precision, device)
        self.learn, self.photo_setting, self.recoater, self.mm_per_pixel = learn, photo, recoater, mm_per_pixel
        self.lessons = lessons
        self._lesson_cells: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # lesson id -> its texture, its mask
        # the texture memory (about a second of coreset and thresholds) is built in the background:
        # the layer that completes the first ones is answered at once (a monitor stores it and
        # alerts), and the next layer waits for the memory only if it comes sooner
        self._builder = ThreadPoolExecutor(1, thread_name_prefix="slmcnn-memory")
        self._building: Future | None = None
        self.new_build()

    def new_build(self) -> None:
        self._take_memory()  # one still being built for the last build is finished, then dropped
        self.first: list[tuple] = []  # per first layer: features, learnable cells, Object share, sure tiles
        self.texture: TextureMemory | None = None
        self.habitual: np.ndarray | None = None  # per tile: the network was sure of Error there on most first layers
        self.change = ChangeMemory()
        self.photo = self.photo_setting
        self.sound_places: list[np.ndarray] = []  # the masks of the lessons that called places sound
        self._taught: tuple | None = None  # (memory, lessons' stamp) last taught

    def see(self, image: np.ndarray) -> Seen:
        """The part of a layer's fine maps that depends on its photo alone (any thread)."""
        return Seen(self.texture_net(image), change_image(image))

    def __call__(self, result) -> FineMaps:
        """The fine maps of a classified layer (predict.LayerResult: image, grid, probabilities;
        its `seen` when the Predictor made it ahead)."""
        image, grid = result.image, result.grid
        shape = image.shape[:2]
        probabilities = result.probabilities
        network = probabilities.argmax(1)
        ignored = np.zeros(len(network), bool) if result.ignored is None else result.ignored
        seen = result.seen if isinstance(getattr(result, "seen", None), Seen) else self.see(image)
        features, bed = seen.features, seen.bed
        self._take_memory()
        sure_tiles = (network == ERROR) & (probabilities[:, ERROR] >= SURE) & ~ignored
        if self.texture is None:  # a region's score: the network's Error probability while learning
            maps, score, unshaped = self._learning(result, features, bed, sure_tiles)
        else:  # then the larger signal
            self._take_lessons()
            maps, score, unshaped = self._judged(result, features, bed, sure_tiles)
        if result.class_map is not None:
            maps.classes[result.class_map == NOT_A_CLASS_PIXEL] = NOT_A_CLASS_PIXEL
        error = maps.classes == ERROR
        objects = tile_mask(network == OBJECT, grid, shape)
        maps.regions, kept = find_regions(
            error, image, score, objects, maps.photo == "recoated", self.recoater, self.mm_per_pixel, unshaped
        )
        maps.classes[error & ~kept] = np.where(objects, OBJECT, POWDER)[error & ~kept]
        return maps

    def _learning(self, result, features, bed, sure_tiles) -> tuple[FineMaps, np.ndarray, np.ndarray]:
        """One of the build's first layers: judged by the network alone, localised; its sound places learned."""
        classes, unshaped = self._network_classes(
            result, sure_tiles | (result.probabilities.argmax(1) == ERROR), self._standing(result)
        )
        error_cells = cv2.resize(
            (classes == ERROR).astype(np.uint8), features.shape[1::-1], interpolation=cv2.INTER_AREA
        )
        tiles = result.probabilities.argmax(1)
        error_tiles = cv2.resize(
            tile_mask(tiles == ERROR, result.grid, classes.shape).astype(np.uint8),
            features.shape[1::-1],
            interpolation=cv2.INTER_NEAREST,
        )
        keep = (error_cells == 0) & (error_tiles == 0)
        object_share = float(np.mean(tiles == OBJECT))
        self.first.append((features, keep, object_share, sure_tiles.copy()))
        self.change.add(bed, cv2.resize((classes == ERROR).astype(np.uint8), bed.shape[::-1]) > 0)
        self.first = self.first[-self.learn :]
        if len(self.first) >= self.learn and sum(int(entry[1].sum()) for entry in self.first) >= MIN_LEARNED:
            self._fit()
        score = tile_values(result.probabilities[:, ERROR], result.grid, classes.shape)
        return FineMaps(classes, None, None, state="learning", photo=self.photo), score, unshaped

    def _fit(self) -> None:
        """Learn from the first layers: what is quick now (the layers' look, the change signal),
        the texture memory in the background (`_take_memory` takes it in)."""
        features, keep, shares, sure = zip(*self.first, strict=True)
        same = [s for s in sure if len(s) == len(sure[-1])]
        self.habitual = np.mean(same, axis=0) > 0.5  # the network sure of Error there on most first layers
        self.change.fit()
        if self.photo == "auto":
            self.photo = "exposed" if float(np.median(shares)) >= EXPOSED_OBJECT_SHARE else "recoated"
        self._building = self._builder.submit(TextureMemory, list(features), list(keep))
        self.first = []

    def _take_memory(self) -> None:
        """The texture memory being built, once it is done (waiting for it)."""
        if self._building is None:
            return
        building, self._building = self._building, None
        self.texture = building.result()
        log.info(
            "fine maps learned from %d first layers: texture threshold %.3g, change threshold %.3g, photos taken %s",
            self.learn, self.texture.threshold, self.change.threshold, self.photo,
        )  # fmt: skip

    def _judged(self, result, features, bed, sure_tiles) -> tuple[FineMaps, np.ndarray, np.ndarray]:
        shape = result.image.shape[:2]
        texture, taught_sound = self.texture.score(features)
        change = self.change.score(bed)
        if taught_sound.any():  # a place changed to a look a reviewer called sound: no change defect
            change[
                cv2.resize(taught_sound.astype(np.uint8), change.shape[::-1], interpolation=cv2.INTER_NEAREST) > 0
            ] = 0
        signal = np.maximum(upsample(texture, shape), upsample(change, shape))
        tiles = result.probabilities.argmax(1)
        # the network's sure Error stays, unless the network was as sure there on most of the
        # layers the build learned (this camera's look at that place) and both signals say the
        # whole tile looks as it did then
        habitual = self.habitual if self.habitual is not None and len(self.habitual) == len(tiles) else None
        taught = self._sound_places(shape)  # or a reviewer called it sound there
        for k in np.flatnonzero(sure_tiles):
            r, c = divmod(int(k), result.grid.shape[1])
            y, x, p = int(result.grid.ys[r]), int(result.grid.xs[c]), result.grid.patch
            seen = (habitual is not None and habitual[k]) or taught[y : y + p, x : x + p].mean() > 0.5
            if seen and signal[y : y + p, x : x + p].max() < LOOKS_SAME:
                sure_tiles[k] = False
        hidden = int(
            ((result.probabilities.argmax(1) == ERROR) & (result.probabilities[:, ERROR] >= SURE)).sum()
            - sure_tiles.sum()
        )
        if hidden:
            log.info("%s: %d sure Error tile(s) where the first layers or lessons were alike", result.path.name, hidden)
        standing = self._standing(result)
        classes, unshaped = self._network_classes(result, sure_tiles, standing)
        standing = standing[0]
        unsure = tile_mask((tiles == ERROR) & ~(result.probabilities[:, ERROR] >= SURE), result.grid, shape)
        classes[unsure & delineate(signal >= LOOKS_SAME, standing)] = (
            ERROR  # the network's unsure Error a signal confirms
        )
        flagged = delineate(signal > 1.0, standing, signal)
        if self.photo == "exposed":  # parts are normal after exposure: a part's place is Error by strong texture only
            part = tile_mask(tiles == OBJECT, result.grid, shape) | (classes == OBJECT)
            flagged = (flagged & ~part) | (upsample(texture, shape) > STRONG)
        classes[flagged] = ERROR
        held_out = (classes == ERROR) & ~taught  # a place called sound is learned, Error or not
        self.change.add(
            bed, cv2.resize(held_out.astype(np.uint8), bed.shape[::-1], interpolation=cv2.INTER_NEAREST) > 0
        )
        return FineMaps(classes, texture, change, state="judged", photo=self.photo), signal, unshaped

    def _sound_places(self, shape: tuple[int, int]) -> np.ndarray:
        """(H, W) bool: where lessons of this bed's size called places sound."""
        taught = np.zeros(shape, bool)
        for mask in self.sound_places:
            if mask.shape == shape:
                taught |= mask
        return taught

    def _take_lessons(self) -> None:
        """Teach the build's memory the lessons, again whenever they change (a review while a build
        runs). A lesson teaches its places unlike the sound ones (EXAMPLE_FLOOR): what the memory
        already holds it need not, and a change to plain powder must stay a change."""
        stamp = self.lessons.stamp() if self.lessons is not None else None
        if stamp is None or self._taught == (id(self.texture), stamp):
            return
        self._taught = (id(self.texture), stamp)
        lessons = []
        for lesson in self.lessons:
            try:
                lessons.append((lesson, *self._lesson(lesson)))
            except (SlmcnnError, OSError) as exc:
                log.warning("lesson %s left out: %s", lesson.id, exc)
        self._lesson_cells = {lesson.id: tuple(cells) for lesson, *cells in lessons}
        memory, threshold = self.texture, self.texture.threshold
        memory.teach([], [])
        self.sound_places = [mask for lesson, _, mask in lessons if lesson.verdict == "sound"]
        taught: dict[str, list[Taught]] = {"sound": [], "defect": []}
        for verdict in ("sound", "defect"):  # a defect's places unlike the sound lessons' too
            for lesson, phases, _ in lessons:
                if lesson.verdict == verdict:
                    phases = [memory.project(f) for f in phases]
                    phases = [p[memory.to_sound(p) > EXAMPLE_FLOOR * threshold] for p in phases]
                    if not any(len(p) for p in phases):
                        log.info("lesson %s: its places look like sound ones already", lesson.id)
                        continue
                    taught[verdict].append(Taught.of(phases, threshold))
            memory.teach(taught["sound"], taught["defect"])
        sound, examples = taught["sound"], taught["defect"]
        log.info("taught %d lesson(s): %d sound, %d defect examples", len(lessons), len(sound), len(examples))

    def _lesson(self, lesson) -> tuple[list[np.ndarray], np.ndarray]:
        """A lesson's texture features at the places it covers, one array per phase, and its mask
        (computed once per lesson). The photo is seen at each half-cell offset: the same look
        elsewhere falls on the CELL px grid at another phase, and its features differ with it."""
        if lesson.id not in self._lesson_cells:
            image, mask = self.lessons.load(lesson)
            phases = []
            for dy, dx in [(a, b) for a in range(0, CELL, 2) for b in range(0, CELL, 2)]:
                f = self.texture_net(image[dy:, dx:])
                coverage = cv2.resize(mask[dy:, dx:].astype(np.float32), f.shape[1::-1], interpolation=cv2.INTER_AREA)
                phases.append(f[coverage > 0])
            self._lesson_cells[lesson.id] = (phases, mask)
        return self._lesson_cells[lesson.id]

    def _network_classes(self, result, error_tiles: np.ndarray, standing: tuple) -> tuple[np.ndarray, np.ndarray]:
        """Pixels of the network's tiles narrowed to what stands out of the powder (`standing`):
        Object within Object tiles, Error within `error_tiles` where it stands out (all of a tile the
        network is sure of where too little in it does: the memory never hides that). Also where
        Error is such a whole tile: its shape is the tile's, not the defect's (regions.name_type)."""
        grid, shape = result.grid, result.image.shape[:2]
        tiles = result.probabilities.argmax(1)
        sure = result.probabilities[:, ERROR] >= SURE
        classes, unshaped = np.full(shape, POWDER, np.uint8), np.zeros(shape, bool)
        standing, faint = standing
        classes[tile_mask(tiles == OBJECT, grid, shape) & standing] = OBJECT
        powder = tile_mask(tiles == POWDER, grid, shape)
        grain = float(faint[powder].mean()) if powder.any() else float(faint.mean())  # the grain's share over the bar
        for k in np.flatnonzero(error_tiles):
            r, c = divmod(int(k), grid.shape[1])
            y, x, p = int(grid.ys[r]), int(grid.xs[c]), grid.patch
            inside = (faint if sure[k] else standing)[y : y + p, x : x + p]
            if sure[k] and (np.count_nonzero(inside) < MIN_AREA or inside.mean() <= GRAIN_RATIO * grain):
                inside = slice(None)  # sure of what nothing here shows more than the grain does: all of it
                unshaped[y : y + p, x : x + p] = True
            classes[y : y + p, x : x + p][inside] = ERROR
        return classes, unshaped

    @staticmethod
    def _standing(result) -> tuple[np.ndarray, np.ndarray]:
        """(H, W) bool: pixels that stand out of the powder around them (a spot or a faint line),
        over SALIENT and over the lower SALIENT_SURE (within a tile the network is sure of)."""
        shape = result.image.shape[:2]
        deviation = salient(result.image, tile_mask(result.probabilities.argmax(1) == POWDER, result.grid, shape))
        kernel = np.ones((5, 5), np.uint8)
        return tuple(
            cv2.morphologyEx((deviation > bar).astype(np.uint8), cv2.MORPH_CLOSE, kernel) > 0
            for bar in (SALIENT, SALIENT_SURE)
        )
