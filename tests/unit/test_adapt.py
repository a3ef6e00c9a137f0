"""Per-build adaptation: the build's first layers learned into a build memory (slmcnn.adapt), the
same from the command line and the Python API, and set-up that checks itself."""

from slmcnn.camera import CameraCalibration, bed_doubts


def test_a_doubtful_bed_is_named_with_what_to_do():
    good = [[100, 80], [540, 90], [530, 400], [110, 390]]
    assert bed_doubts((480, 640), good) == []
    outside = bed_doubts((480, 640), [[-3.6, 80], [540, 90], [530, 400], [110, 390]])
    assert any("outside" in d and "--corners" in d for d in outside)
    edge = bed_doubts((480, 640), [[0, 0], [639, 0], [639, 479], [0, 479]])
    assert any("frame's edge" in d for d in edge)
    rail = bed_doubts((480, 640), [[10, 80], [630, 90], [620, 200], [20, 190]])
    assert any("too unequal" in d for d in rail)
    moved = bed_doubts((480, 640), good, CameraCalibration([[150, 80], [590, 90], [580, 400], [160, 390]]))
    assert any("last calibration" in d for d in moved)
