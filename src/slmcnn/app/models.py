"""The JSON the app's API takes and gives, as Pydantic models: a request of the wrong shape or type
is refused with one line naming the field (`refusal`, HTTP 400, as every other refusal of the app),
and a response holds the fields its page reads, no more."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, ValidationError

from slmcnn.labels import POWDER

Number = StrictInt | StrictFloat  # a JSON number, not true or false (which Python counts as 1 and 0)


def refusal(error: ValidationError | Any) -> str:
    """A request's first validation error as one line: where in the request, and what is wrong."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"] if part != "body") or "the request"
    return f"{where}: {first['msg'][:1].lower()}{first['msg'][1:]}"


class RequestBody(BaseModel):
    """Every request body: who sends it (the labeller's name; the app's user when not given)."""

    who: str | None = None


# requests
class OpenFolder(RequestBody):
    folder: str = ""


class LabelItem(BaseModel):
    """One tile's label; `row` and `col` are checked against the layer's grid (a 404 names the tile)."""

    row: Any = None
    col: Any = None
    cls: StrictInt | None = None  # None clears the label
    checked: StrictBool | None = None  # None: checked when it has a class


class Labels(RequestBody, LabelItem):
    """One label, or several in `labels`."""

    labels: list[LabelItem] | None = None

    def items(self) -> list[LabelItem]:
        return self.labels if self.labels is not None else [self]


class Review(RequestBody):
    verdict: Literal["confirmed", "false_alarm"]
    instead: StrictInt = POWDER  # what a false alarm's Error tiles really are: 0 Powder or 1 Object


class FineTuneRequest(RequestBody):
    epochs: StrictInt = Field(15, ge=1, le=500)
    lr: Number = Field(3e-4, gt=0, lt=1)


class CameraRequest(RequestBody):
    """Corners clicked on frame `index` and the good layers picked (camera_setup checks them)."""

    corners: Any = None
    index: StrictInt = 0
    good: list[Any] = []
    size: StrictInt = 768
    error_threshold: Number | None = None
    replace: bool = False


# responses
class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PhotoFolder(Answer):
    folder: str
    photos: int


class SetEntry(Answer):
    """A set on the start page; the build fields only for a monitored build."""

    id: str
    kind: Literal["build", "folder"]
    name: str
    layers: int
    labelled: int
    source: str | None = None
    build: str | None = None
    machine: str | None = None
    grades: dict[str, int] | None = None
    last_layer: float | None = None
    live: bool | None = None
    alerts_open: int | None = None


class LayerEntry(Answer):
    index: int
    file: str
    labelled: int
    number: int | None = None
    powder: float | None = None
    object: float | None = None
    error: float | None = None
    grade: str | None = None


class AlertEntry(Answer):
    id: int
    layer: int | None
    index: int | None  # the layer's place in the set's layer list
    file: str | None
    grade: str
    rule: str
    message: str | None
    value: float | None
    regions: list[dict]
    pushed: bool
    verdict: str | None
    who: str | None


class SetSummary(SetEntry):
    layer_list: list[LayerEntry]
    alerts: list[AlertEntry]
    recurrence: list[list[float]]
    regions: list[dict]


class LayerView(Answer):
    """One layer as the layer page draws it: its tiles' classes, probabilities, anomaly and labels."""

    set: str
    index: int
    count: int
    file: str
    number: str
    build: str
    width: int
    height: int
    patch: int
    stride: int
    ys: list[int]
    xs: list[int]
    rows: int
    cols: int
    classes: list[list[int]]
    probabilities: list[list[list[float]]]
    anomaly: list[list[float]] | None
    labels: list[list[int | None]]
    checked: list[list[bool]]
    straightened: bool
    model: str
    photo_changed: bool
    grade: str | None
    why: str | None
    regions: list[dict]


class Stored(Answer):
    stored: int


class Reviewed(Answer):
    verdict: str
    labelled: int
    instead: str | None
    lesson: str | None
    lessons: str


class Undone(Answer):
    restored: int
    lessons_forgotten: int


class Exported(Answer):
    folder: str
    tiles: int
    layers: int
    counts: dict[str, int]
    replaced: list[str]


class CurrentModel(Answer):
    name: str
    path: str
    arch: str
    patch: int
    current: str


class MadeCurrent(Answer):
    model: str
    monitor: str
    camera: str | None


class FineTuneAnswer(Answer):
    """The fine-tune's state (app.finetune.FineTuneState), its log's last lines."""

    state: Literal["idle", "refused", "running", "done", "failed"]
    epoch: int
    epochs: int
    started: float
    seconds: float
    log: list[str]
    history: list[dict]
    run: str
    export: dict
    comparison: dict
    message: str
