"""The defect types a region of Error is named by, one vocabulary for the maps, alerts, report, app,
API and the synthetic builds' truth. It imports nothing of slmcnn but the ground floor.

The recoater's travel is down the straightened bed (top to bottom) unless a camera says otherwise:
a streak runs along it, recoater hopping (chatter, a blade jumping) runs across it."""

DEFECT_TYPES: tuple[str, ...] = (
    "streak",  # a long thin line along the recoater's travel (a damaged blade, a dragged particle)
    "hopping",  # lines or bands across the recoater's travel (the blade jumping, a part disturbing it)
    "short_feed",  # a broad area the powder did not cover (too little powder, incomplete spreading)
    "super_elevation",  # a part standing above the fresh powder (swelling, a lifted edge)
    "spatter",  # small scattered spots or debris on the powder
    "hole",  # a compact dark pit or missing powder
    "other",  # a visible defect of none of the shapes above
)
"""Type names in label order; the label of a type in a type map is its index + 1 (0: no defect)."""

TYPE_LABELS: dict[str, int] = {name: i + 1 for i, name in enumerate(DEFECT_TYPES)}
"""The pixel value of each type in a type map (`types/<layer>.png` of a synthetic build)."""

SYNTH_TYPES: dict[str, str] = {
    "streak": "streak",
    "scratch": "streak",
    "chatter": "hopping",
    "spread_line": "hopping",
    "short_feed": "short_feed",
    "swelling": "super_elevation",
    "ridge": "super_elevation",
    "debris": "spatter",
    "spatter": "spatter",
    "hole": "hole",
}
"""The type each synthetic defect kind is (`synth.defects.DEFECT_KINDS`)."""
