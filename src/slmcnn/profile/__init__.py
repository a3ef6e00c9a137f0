"""The camera profile: what this camera's good layers look like, learned without labels.

A shop has hundreds of good layers and no labels. From N good frames (straightened by a
CameraCalibration, or full frames) the profile keeps the network's own features of every tile (the
maps after blocks 3 and 4, averaged over the tile), standardised by this camera's feature
statistics, in a memory bank (PatchCore; greedy coreset subsampling keeps at most CORESET entries).
A tile's anomaly is its distance to the nearest memory entry divided by its position's threshold:
above 1 it looks unlike every tile of the good layers.

Chosen by measurement with model v3 (benchmarks/bench_profile.py, figures in benchmarks/README.md),
re-measured with v5, v6, v7 and v8 (shipped now; benchmarks/README.md). PBLM, 10 No_Defect
photos profiled, the 11 other distinct good photos and 150 photos of each large defect folder; a
photo is flagged when it has an Error tile after `decide`; AUROC of the photo score (v3 / v5, v5
with the decision rules below):

    normality model                            good flagged  Powder_Uneven  other folders  AUROC
    network alone (no profile)                 45% / 9%      23% / 99%      97-100% / 100% 0.774 / 0.999
    tile mean, nearest neighbour (this)        9% / 9%       79% / 99%      100% / 100%    1.000 / 1.000
    16 locations per tile, largest distance    18% / 27%     42% / 100%     83-90% / 97%+  0.886 / 0.986
    PaDiM-style Gaussian per tile position     100% / 100%   100% / 100%    100% / 100%    1.000 / 1.000

The profile decides with the network (`decide`), by rules each measured on PBLM and on a synthetic
camera style the network never saw (20 layers profiled; v5):
- The network's Errors that the profile does not confirm (anomaly under `confirm`) are vetoed:
  Error tiles on other sound layers of the unseen style fall from 19 to 0 per 1,000.
- unless they share an edge with a tile that is Error by the profile's rules: defects reach over
  neighbouring tiles, while the network's false Errors on sound layers of an unseen camera are
  lone tiles alike the good ones. Of 288 true Error tiles on layers with defects the network
  finds 124 (26 false); with the veto alone 114 (12 false), with this rule 127 (17 false).
- A tile the network calls Powder is Error when its anomaly is over 1 and over its layer's level
  (`layer_level`: the layer's median anomaly over a good layer's): a layer that is farther from
  the good ones as a whole has changed its look (exposure, gain), not grown a defect everywhere.
  PBLM's good photos 0015-0017 are markedly grainier than the first 10 (a gain change: their
  typical tile 1.9x as far from the memory, 3-6 tiles over 1 each); with this rule 1 of the 11
  other good photos is flagged (by the network's own Error), without it 3. It costs 2 of the
  127 synthetic defect tiles (a defect must stand out of a grainier layer as much as of a good
  one). Widening the memory with jittered copies of the good frames instead (grain, blur, JPEG,
  gamma) cleared those photos but lost clear defects (a dark hole's anomaly fell from 2.0 to
  0.8-1.1), so it is not done.
- The powder beside a tile the network calls Object is left to the network: a part the good
  layers never showed changes the powder next to it (its edge reaching in, its shadow). Profiled
  from part-free layers, sound layers with parts got 36 Error tiles in 1,080 with the profile,
  21 without it (the network's own); with this rule 21, and no defect tile is lost.

Thresholds come from the good frames themselves: each frame is scored against a memory without its
own entries (leave-one-out over frame folds), an exponential tail is fitted to the largest of these
scores (peaks over threshold), and the global threshold is set where the tail predicts
`TARGET_FALSE_TILES` false tiles per layer, at most 1 false Error tile in 100 sound layers. Fixed
marks of the plate or camera that the memory does not explain (positions whose typical left-out
score is far above the others') get their own threshold, `MARK_MARGIN` above the largest left-out
score seen there; a mark that is alike in every good frame is in the memory and never stands out.
The estimate is stored with the thresholds.

The profile learns the camera, not the parts: it only decides Powder tiles and confirms or vetoes
the network's Error calls; a tile the network calls Object stays Object (`decide`). In a layer
pipeline `ProfileBackend` runs the network once for classes and features and decides each layer
once all its tiles are classified, so the profile itself costs only the nearest-neighbour search.

A profile is data: camera.json (geometry + metadata) and camera.profile.safetensors (arrays) beside
it; loading never unpickles, and a profile is tied to the weights it was built with (sha256).
"""

from slmcnn.constants import ERROR, OBJECT, POWDER
from slmcnn.errors import ProfileError
from slmcnn.profile.bank import (
    CORESET,
    FOREIGN,
    MIN_FRAMES,
    CameraProfile,
    build_profile,
    empty_profile,
    extend_profile,
    profile_from_features,
    update_profile,
)
from slmcnn.profile.decision import (
    CONFIRM,
    ERROR_THRESHOLD,
    TileScores,
    beside,
    decide,
    layer_level,
    thresholds_from_scores,
)
from slmcnn.profile.features import GRID, SCALE_FLOOR, TAPS, FeatureNet, feature_scale, greedy_coreset, nearest_distance
from slmcnn.profile.storage import (
    arrays_path,
    camera_photo,
    load_calibration,
    load_camera,
    open_camera,
    save_camera,
    update_camera,
)

__all__ = [
    "CONFIRM",
    "CORESET",
    "ERROR",
    "ERROR_THRESHOLD",
    "FOREIGN",
    "GRID",
    "MIN_FRAMES",
    "OBJECT",
    "POWDER",
    "SCALE_FLOOR",
    "TAPS",
    "CameraProfile",
    "FeatureNet",
    "ProfileError",
    "TileScores",
    "arrays_path",
    "beside",
    "build_profile",
    "camera_photo",
    "decide",
    "empty_profile",
    "extend_profile",
    "feature_scale",
    "greedy_coreset",
    "layer_level",
    "load_calibration",
    "load_camera",
    "nearest_distance",
    "open_camera",
    "profile_from_features",
    "save_camera",
    "thresholds_from_scores",
    "update_camera",
    "update_profile",
]
