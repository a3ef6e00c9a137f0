"""Fine maps: Powder / Object / Error per pixel of the straightened bed, and the anomaly behind it.

A 128 px tile is 40 mm of bed on a common camera: a 3 mm spot painted as a tile is a 40 mm square.
The tile network still decides *what* a layer holds; two signals measured on real cameras decide
*where* (shared/reference/finding-defects-notes.md):

- texture (texture.py): the network's blocks 1-3 over the whole layer, against a memory of the
  build's first layers: spatter, holes, streaks stand out of the powder they lie in;
- change (change.py): the bed against the median of the build's last layers at the same place: a
  part breaking through, a short feed are new *at that place*.

Each signal's score is 1 at its threshold, fitted to the build's own first layers (thresholds.py).
What decides a pixel:
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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from slmcnn import images
from slmcnn.change import ChangeMemory, change_image
from slmcnn.constants import ERROR, OBJECT, PHOTOS, POWDER, SURE_ERROR
from slmcnn.errors import SettingsError, SlmcnnError
from slmcnn.labels import NOT_A_CLASS_PIXEL
from slmcnn.regions import MIN_AREA, DefectRegion, find_regions
from slmcnn.teaching import Lessons
from slmcnn.texture import CELL, LOCAL, DenseTexture, Taught, TextureMemory
from slmcnn.thresholds import STRONG
from slmcnn.tiles import tile_mask, tile_values

log = logging.getLogger(__name__)

LEARN = 5  # first layers of a build that teach it
MIN_LEARNED = 256  # sound texture locations the first layers must hold (else the next layers teach too)
SURE = SURE_ERROR  # a network Error this sure stays unless its place looked so on the first layers
LOOKS_SAME = 0.5  # "as before": both signals under this share of their thresholds over the whole tile
SALIENT = 4.0  # robust deviations from the local powder that make a pixel part of an Error or Object
SALIENT_SURE = 2.5  # the same within a tile the network is sure of Error: something is there
GRAIN_RATIO = 2.0  # ... if more of the tile's pixels pass it than this many times the powder's do
LINE = 32  # px a faint line is averaged along before it is compared with the grain
EXPOSED_OBJECT_SHARE = 0.08  # auto: first layers with this share of Object tiles were taken after exposure
EXAMPLE_FLOOR = 0.5  # a taught defect's places that are examples: those this far (of the threshold) from sound


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
    """What the fine maps read of a photo before its tiles are known: its texture, its bed as the
    change signal compares it, and the texture's search in the build's memory when there is one.
    Made by `FineMapper.see` in any thread (the Predictor's decoding pool makes it for the next
    layers while this one is mapped: the mapping sets a job's pace, the search is most of it)."""

    features: np.ndarray | None  # (H / CELL, W / CELL, D) texture features; None once searched
    bed: np.ndarray  # change_image
    memory: "TextureMemory | None" = None  # the memory searched (None: none was there yet)
    searched: tuple | None = None  # its TextureMemory.search of the features


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
        """The part of a layer's fine maps that depends on its photo alone and the build's memory
        (any thread; `__call__` uses the search only if that memory is still the build's). Once
        searched the features are dropped, the search's points kept (a third of their size): the
        decoding runs tens of layers ahead, each waiting with its Seen."""
        features, memory = self.texture_net(image), self.texture
        if memory is None:
            return Seen(features, change_image(image))
        return Seen(None, change_image(image), memory, memory.search(features))

    def __call__(self, result) -> FineMaps:
        """The fine maps of a classified layer (predict.LayerResult: image, grid, probabilities;
        its `seen` when the Predictor made it ahead)."""
        image, grid = result.image, result.grid
        shape = image.shape[:2]
        probabilities = result.probabilities
        network = probabilities.argmax(1)
        ignored = np.zeros(len(network), bool) if result.ignored is None else result.ignored
        seen = result.seen if isinstance(getattr(result, "seen", None), Seen) else None
        self._take_memory()
        if seen is None or (seen.features is None and seen.memory is not self.texture):
            seen = self.see(image)  # not made ahead, or searched in a memory no longer the build's
        features, bed = seen.features, seen.bed
        sure_tiles = (network == ERROR) & (probabilities[:, ERROR] >= SURE) & ~ignored
        if self.texture is None:  # a region's score: the network's Error probability while learning
            maps, score, unshaped = self._learning(result, features, bed, sure_tiles)
        else:  # then the larger signal
            self._take_lessons()
            maps, score, unshaped = self._judged(result, seen, sure_tiles)
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

    def _judged(self, result, seen: Seen, sure_tiles) -> tuple[FineMaps, np.ndarray, np.ndarray]:
        shape, bed = result.image.shape[:2], seen.bed
        searched = seen.searched if seen.memory is self.texture else None  # not another build's
        texture, taught_sound = self.texture.score(seen.features, searched)
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
