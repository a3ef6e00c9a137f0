"""Where a signal of the fine maps says "unusual": each signal's threshold comes from the build's own
first layers (their places scored against the other first layers, leave-one-out), an exponential
tail fitted to those scores, the threshold where it expects FALSE_PLACES places over it per sound
layer (the camera profile's rule); a score of 1 is that threshold.
"""

import numpy as np

BED_EDGE = 16  # px along the bed's edge the signals leave out: it moves with the straightening
FALSE_PLACES = 0.002  # expected places over a signal's threshold per sound layer (tail fit, profile.decision)
STRONG = 2.0  # a signal this far over its threshold is Error where the photo shows nothing, or on a part's place after exposure


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
