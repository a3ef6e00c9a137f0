import dataclasses
import hashlib

import cv2
import numpy as np
import pytest

from slmcnn.defect_types import DEFECT_TYPES, SYNTH_TYPES, TYPE_LABELS
from slmcnn.errors import SettingsError
from slmcnn.images import read
from slmcnn.labels import ERROR, OBJECT, LabelRule
from slmcnn.synth import SynthSettings, generate_build
from slmcnn.synth.build import ALL_TYPES_RATES, DEFAULT_RATES, plan_build, render_layer
from slmcnn.synth.defects import DEFECT_KINDS, VISIBLE, DefectEvent
from slmcnn.synth.stats import camera_stats


def digest(folder):
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(folder)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_same_seed_gives_identical_files(tmp_path):
    settings = dict(layers=3, seed=9, size=256)
    generate_build(SynthSettings(**settings), tmp_path / "a", workers=2)
    generate_build(SynthSettings(**settings), tmp_path / "b", workers=1)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    generate_build(SynthSettings(**{**settings, "seed": 10}), tmp_path / "c", workers=1)
    assert digest(tmp_path / "a") != digest(tmp_path / "c")


def test_label_rule():
    rule = LabelRule(error_min_pixels=10, object_min_fraction=0.05, object_ambiguous_fraction=0.01)
    tiles = np.zeros((4, 20, 20), np.uint8)
    tiles[1, :2, :5] = 2  # 10 error pixels -> Error
    tiles[2, :5, :] = 1  # 25% object -> Object
    tiles[3, 0, :3] = 2  # 3 error pixels -> Powder by the hard rule, but ambiguous
    assert rule.labels(tiles).tolist() == [0, 2, 1, 0]
    assert rule.ambiguous(tiles).tolist() == [False, False, False, True]


@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_each_defect_type_appears_when_enabled(kind):
    settings = SynthSettings(layers=6, seed=2, size=256, defect_rates={kind: 0.6}, parts=(3, 5))
    plan = plan_build(settings)
    found = []
    for layer in range(1, 7):
        rendered = render_layer(plan, layer)
        found += [d["type"] for d in rendered.defects]
        for d in rendered.defects:
            assert d["pixels"] > 0
        assert set(np.unique(rendered.types)) <= {0, TYPE_LABELS[SYNTH_TYPES[kind]]}
    assert set(found) == {kind}
    other = SynthSettings(layers=6, seed=2, size=256, defect_rates={}, parts=(3, 5))
    assert all(not render_layer(plan_build(other), layer).defects for layer in range(1, 7))


def test_direction_turns_image_and_mask_together():
    base = dict(layers=1, seed=4, size=256, defect_rates={"streak": 1.0}, perspective=0.0)
    down = render_layer(plan_build(SynthSettings(**base, direction="down")), 1)
    left = render_layer(plan_build(SynthSettings(**base, direction="left")), 1)
    assert (np.rot90(down.mask, 1) == left.mask).all()
    assert (np.rot90(down.image, 1) == left.image).all()


def test_impossible_settings_and_occupied_folders(tmp_path):
    with pytest.raises(SettingsError, match="--patch"):
        generate_build(SynthSettings(layers=1, size=64, patch=128), tmp_path / "x")
    with pytest.raises(SettingsError, match="--layers"):
        generate_build(SynthSettings(layers=-1), tmp_path / "x")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("precious")
    with pytest.raises(SettingsError, match="not an slmcnn build"):
        generate_build(SynthSettings(layers=1, size=128), tmp_path / "mine", force=True)
    assert (tmp_path / "mine" / "thesis.txt").read_text() == "precious"
    generate_build(SynthSettings(layers=1, size=128), tmp_path / "b")
    with pytest.raises(SettingsError, match="--force"):
        generate_build(SynthSettings(layers=1, size=128), tmp_path / "b")
    generate_build(SynthSettings(layers=1, size=128), tmp_path / "b", force=True)


def quiet(**kw):
    """Settings for pixel checks: no defects, no perspective, a straight recoater."""
    return SynthSettings(**{"layers": 4, "size": 256, "defect_rates": {}, "perspective": 0.0, **kw})


def test_after_exposure_parts_are_bright_objects_not_errors():
    for seed in range(3):
        settings = quiet(seed=seed, after_exposure=(1.0, 1.0), parts=(4, 6))
        rendered = render_layer(plan_build(settings), 1)  # layer 1: no finished parts show through yet
        gray = rendered.image[..., 0].astype(float)
        assert rendered.photo == "exposed" and "melted" in rendered.looks
        assert not (rendered.mask == ERROR).any()
        part, powder = rendered.mask == OBJECT, rendered.mask == 0
        assert np.median(gray[part]) - np.median(gray[powder]) >= 40
    recoated = render_layer(plan_build(quiet(seed=0, after_exposure=(0.0, 0.0))), 1)
    assert recoated.photo == "recoated" and "melted" not in recoated.looks


def test_finished_parts_show_faintly_as_objects():
    plan = plan_build(quiet(seed=1, layers=6, parts=(1, 1), part_kinds=("square",), after_exposure=(1.0, 1.0)))
    plan.parts[0].first, plan.parts[0].last = 1, 2
    rendered = render_layer(plan, 4)
    part = rendered.mask == OBJECT
    assert part.any() and rendered.looks == ["absent"]
    gray = rendered.image[..., 0].astype(float)
    kernel = np.ones((5, 5), np.uint8)
    outline = part & ~cv2.erode(part.astype(np.uint8), kernel).astype(bool)
    around = cv2.dilate(part.astype(np.uint8), kernel, iterations=3).astype(bool) & ~part
    assert gray[outline].mean() < gray[around].mean() - 4  # a darker outline, not a bright top
    assert gray[part].mean() < gray[around].mean()


@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_error_labels_only_where_the_photo_visibly_changed(kind):
    settings = quiet(
        seed=3, layers=6, parts=(3, 5), defect_rates={kind: 0.7}, jpeg_share=1.0, after_exposure=(0.5, 0.5)
    )
    plan = plan_build(settings)
    clean_plan = dataclasses.replace(plan, defects=[])
    changed_any = False
    for layer in range(1, 7):
        rendered, clean = render_layer(plan, layer), render_layer(clean_plan, layer)
        diff = np.abs(rendered.image[..., 0].astype(int) - clean.image[..., 0])
        error = rendered.mask == ERROR
        assert (diff[error] >= VISIBLE).all()
        assert (rendered.mask[~error] == clean.mask[~error]).all()
        changed_any |= bool(error.any())
    assert changed_any


def test_camera_looks_span_dark_grainy_jpeg_to_bright_clean():
    centres, grains, jpegs, photos = [], [], [], set()
    for seed in range(16):
        plan = plan_build(quiet(seed=seed))
        rendered = render_layer(plan, 2)
        stats = camera_stats(rendered.image)
        centres.append(stats["centre"])
        grains.append(stats["grain_std"])
        jpegs.append(plan.camera.jpeg)
        photos |= set(plan.photos)
    assert min(centres) < 130 and max(centres) > 200
    assert max(grains) > 6 and min(grains) < 5
    assert 0 in jpegs and any(jpegs)
    assert photos == {"recoated", "exposed"}


def test_jpeg_walls_and_gradient_are_applied():
    base = render_layer(plan_build(quiet(seed=4, jpeg_share=0.0, walls_share=0.0)), 1).image
    jpeg = render_layer(plan_build(quiet(seed=4, jpeg_share=1.0, jpeg_quality=(30, 30), walls_share=0.0)), 1).image
    assert (base != jpeg).mean() > 0.3
    walled = render_layer(
        plan_build(
            quiet(seed=4, walls_share=1.0, powder_level=(200.0, 200.0), parts=(0, 0), defect_rates={"streak": 1.0})
        ),
        1,
    )
    gray, rim = walled.image[..., 0].astype(float), walled.mask.copy()
    border = np.zeros(rim.shape, bool)
    border[:6], border[-6:], border[:, :6], border[:, -6:] = True, True, True, True
    assert (rim[border] == 0).all()  # the chamber is Powder, never Error
    assert np.median(gray[border]) < np.median(gray[96:160, 96:160]) - 40
    flat = plan_build(quiet(seed=5, light_gradient=(0.0, 0.0), falloff=(0.0, 0.0))).camera
    steep = plan_build(quiet(seed=5, light_gradient=(0.35, 0.35), falloff=(0.0, 0.0))).camera
    assert np.ptp(flat.illumination(64)) < 0.15 < np.ptp(steep.illumination(64))


@pytest.mark.parametrize("kind", ["pins", "cells", "large", "lattice"])
def test_new_part_kinds_draw_objects(kind):
    settings = quiet(seed=6, parts=(2, 3), part_kinds=(kind,), after_exposure=(1.0, 1.0))
    rendered = render_layer(plan_build(settings), 1)
    part = rendered.mask == OBJECT
    assert part.any() and "melted" in rendered.looks
    count, _ = cv2.connectedComponents(part.astype(np.uint8))
    if kind == "pins":
        assert count - 1 >= 16  # a grid of separate small squares or pins
    if kind == "large":
        assert part.mean() > 0.05
    gray = rendered.image[..., 0].astype(float)
    assert gray[part].mean() > gray[rendered.mask == 0].mean() + 30


def test_bed_scale_varies_part_sizes_relative_to_the_tile():
    def mean_size(tile_mm):
        sizes = []
        for seed in range(6):
            plan = plan_build(quiet(seed=seed, size=768, tile_mm=(tile_mm, tile_mm), part_kinds=("circle", "square")))
            assert plan.tile_mm == pytest.approx(tile_mm)
            sizes += [p.size for p in plan.parts]
        return np.mean(sizes)

    assert mean_size(5.0) > 3 * mean_size(40.0)
    spans = {round(plan_build(quiet(seed=s)).tile_mm) for s in range(12)}
    assert min(spans) < 10 and max(spans) > 25


def test_powder_nuisances_are_powder():
    for seed in range(6):
        settings = quiet(seed=seed, parts=(0, 0), walls_share=0.5)
        rendered = render_layer(plan_build(settings), 2)
        assert (rendered.mask == 0).all()  # corners, edge lines, top line, banding, walls: all Powder
        stats = camera_stats(rendered.image)
        assert stats["corner"] < stats["centre"]


def test_every_kind_draws_a_named_type_and_the_preset_gives_each_type_one_rate():
    assert set(SYNTH_TYPES) == set(DEFECT_KINDS) and set(SYNTH_TYPES.values()) <= set(DEFECT_TYPES)
    assert set(ALL_TYPES_RATES) == set(DEFECT_KINDS) and all(r > 0 for r in ALL_TYPES_RATES.values())
    per_type = {}
    for kind, rate in ALL_TYPES_RATES.items():
        per_type[SYNTH_TYPES[kind]] = per_type.get(SYNTH_TYPES[kind], 0.0) + rate
    assert len(set(np.round(list(per_type.values()), 9))) == 1
    SynthSettings(defect_rates=ALL_TYPES_RATES).check()
    assert DEFAULT_RATES != ALL_TYPES_RATES


def test_type_maps_are_the_error_masks_named(tmp_path):
    settings = SynthSettings(layers=6, seed=0, size=256, direction="left", defect_rates=ALL_TYPES_RATES)
    info = generate_build(dataclasses.replace(settings, write_patches=False), tmp_path / "b", workers=1)
    assert settings.perspective > 0  # turned and warped: types/ takes the masks' geometry
    seen = set()
    for layer in info["layers"]:
        mask = read(tmp_path / "b" / layer["mask"])[..., 0]
        types = read(tmp_path / "b" / layer["types"])[..., 0]
        assert types.shape == mask.shape == (256, 256)
        assert ((types > 0) == (mask == ERROR)).all()
        named = {TYPE_LABELS[d["defect_type"]] for d in layer["defects"]}
        assert set(np.unique(types)) - {0} <= named
        seen |= named
    assert seen == {TYPE_LABELS[t] for t in SYNTH_TYPES.values()}  # every type a synth kind can draw


@pytest.mark.parametrize("order", [("streak", "chatter"), ("chatter", "streak")])
def test_where_defects_overlap_the_later_names_the_pixel(order):
    plan = plan_build(quiet(seed=1, layers=1, parts=(0, 0)))
    seeds = {"streak": 13, "chatter": 14}  # a streak down the bed crossing chatter's band across it
    plan.defects = [DefectEvent(kind, 1, 1, seeds[kind]) for kind in order]
    rendered = render_layer(plan, 1)
    alone = [render_layer(dataclasses.replace(plan, defects=[e]), 1).mask == ERROR for e in plan.defects]
    both = alone[0] & alone[1] & (rendered.mask == ERROR)  # (where the two cancel out, neither shows)
    assert both.sum() > 20
    assert (rendered.types[both] == TYPE_LABELS[SYNTH_TYPES[order[1]]]).all()
    assert ((rendered.types > 0) == (rendered.mask == ERROR)).all()


@pytest.mark.parametrize("kind", ["swelling", "ridge"])
def test_a_part_breaking_through_fresh_powder_is_a_dark_super_elevation(kind):
    def render(breakthrough):
        settings = quiet(seed=2, layers=4, parts=(3, 5), defect_rates={kind: 0.8}, after_exposure=(0.0, 0.0))
        return render_layer(plan_build(dataclasses.replace(settings, breakthrough=breakthrough)), 4)

    broken, bright = render(1.0), render(0.0)
    assert broken.photo == "recoated"
    for rendered in (broken, bright):
        error = rendered.mask == ERROR
        assert error.sum() > 50 and (rendered.types[error] == TYPE_LABELS["super_elevation"]).all()
    gray = broken.image[..., 0].astype(float)
    powder = np.median(gray[broken.mask == 0])
    assert np.median(gray[broken.mask == ERROR]) < powder - 10  # dark, where the default look is bright
    bright_gray = bright.image[..., 0].astype(float)
    assert np.median(bright_gray[bright.mask == ERROR]) > np.median(gray[broken.mask == ERROR])
