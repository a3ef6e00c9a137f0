"""The network judged against this camera's good layers and, with `adapt`, this build's own first
layers: a layer backend (`backends.Backend`) that runs the network once for both the class
probabilities and the profile's features, so the judging costs only the nearest-neighbour search.

The Predictor hands it each layer's probabilities once the layer is classified (`finish_layer`,
whole layers or strips alike): it returns the decided probabilities (`profile.decide`, with the
layer's tile neighbours; a changed tile's decided class on top), the tiles' anomaly and the layer's
place in its build's adaptation. A build ends when `new_build` is called (the monitor tells builds
apart) or when the layers' folder changes (`predict-layer` over several folders).
"""

from pathlib import Path

import numpy as np
import torch

from slmcnn.adapt import Adaptation, BuildMemory
from slmcnn.errors import SettingsError
from slmcnn.profile import CameraProfile, FeatureNet, ProfileError


class ProfileBackend:
    """Classes from the network, decided with the camera profile and the build memory."""

    name = "torch+profile"

    def __init__(
        self,
        profile: CameraProfile | None,
        model: torch.nn.Module,
        confirm: float | None = None,
        *,
        adapt: int = 0,
        error_threshold: float | None = None,
        precision: str = "auto",
        device: "str | torch.device" = "cpu",
    ):
        if profile is None and not adapt:
            raise SettingsError("a judged backend needs a camera profile or `adapt` (the build's first layers)")
        self.profile, self.model, self.confirm, self.error_threshold = profile, model, confirm, error_threshold
        if profile is not None:
            self.net = profile.feature_net(model, device)
        else:
            self.net = FeatureNet(model, precision=precision, device=device)
        self.device = self.net.network.device
        self.frame_shape = tuple(profile.frame_shape) if profile is not None else None  # the Predictor warms up on it
        self.memory = BuildMemory(profile, adapt, model, self.net.precision) if adapt else None
        self._features: np.ndarray | None = None  # tiles classified, their layer not finished yet
        self._folder: str | None = None

    def probabilities(self, patches: np.ndarray) -> np.ndarray:
        probs, features = self.net(patches)
        self._features = features if self._features is None else np.concatenate([self._features, features])
        return probs

    def new_build(self) -> None:
        """The next layer starts a build: its first layers are learned again."""
        self._folder = None
        if self.memory is not None:
            self.memory.reset()

    def finish_layer(
        self, probabilities: np.ndarray, grid, name: str = ""
    ) -> tuple[np.ndarray, np.ndarray | None, Adaptation | None]:
        """The decided probabilities, the anomaly of one layer's tiles (row-major) and its place in
        the adaptation, for a layer classified by `probabilities` in layer order."""
        n = len(probabilities)
        features, self._features = self._features[:n], self._features[n:]
        if self.profile is not None and tuple(grid.shape) != tuple(self.profile.grid_shape):
            raise ProfileError(
                f"{name}: a layer of {grid.shape[0]}x{grid.shape[1]} tiles, the camera profile has "
                f"{self.profile.grid_shape[0]}x{self.profile.grid_shape[1]} (its frame size, stride = patch)"
            )
        if self.memory is None:
            distance = self.profile.distances(features)
            scores = self.profile.decide_tiles(probabilities, distance, self.confirm, self.error_threshold)
            return scores.probabilities, scores.anomaly.astype(np.float32), None
        folder = str(Path(name).parent)
        if self._folder is not None and folder != self._folder:
            self.memory.reset()
        self._folder = folder
        return self.memory.judge(probabilities, features, grid.shape, name, self.confirm, self.error_threshold)
