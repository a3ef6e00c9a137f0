"""Errors a user can cause. The CLI prints them as one line and exits non-zero; anything else is a bug.

Messages name settings in the Python API's terms, in backticks: "`steps` must be at least 2",
"`method=adaptive` needs `precision=fp32`". `str(error)` drops the backticks; the CLI calls
`for_cli(flags)` to name its own flags instead ("--steps", "--method adaptive").
"""

import re
from collections.abc import Mapping

_SETTING = re.compile(r"`([^`]+)`")


class SlmcnnError(Exception):
    """Base class: a problem with the user's input or settings, not with slmcnn."""

    exit_code = 2

    def __str__(self) -> str:
        return _one_line(_SETTING.sub(r"\1", super().__str__()))

    def for_cli(self, flags: Mapping[str, str] | None = None) -> str:
        """The message with each `setting` named by its command-line flag: `flags` maps a setting
        (or `setting=value`) to its flag; otherwise `name` is --name, `name=True` is --name and
        `name=value` is --name value."""
        flags = flags or {}

        def flag(match: re.Match) -> str:
            text = match[1]
            if text in flags:
                return flags[text]
            name, eq, value = text.partition("=")
            option = flags.get(name, "--" + name.replace("_", "-"))
            return option if not eq or value == "True" else f"{option} {value}"

        return _one_line(_SETTING.sub(flag, super().__str__()))


def _one_line(text: str) -> str:
    """A message is one line, whatever names or values from the user's files it quotes."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


class ImageReadError(SlmcnnError):
    """A file that is missing, unreadable, truncated or not an image."""


class DataError(SlmcnnError):
    """A data set that cannot be used: empty, wrong layout, unknown labels, wrong patch size."""


class ModelFileError(SlmcnnError):
    """A model file that is missing, corrupt, from another version or of an unknown architecture."""


class SettingsError(SlmcnnError):
    """Impossible settings: negative counts, a patch larger than the image, an occupied folder."""


class OutputError(SlmcnnError):
    """An output that cannot be written: it exists (and `force` was not given), it is the input, its
    folder is read-only or not a folder, or the disk is full."""


class DatabaseError(SlmcnnError):
    """A database that cannot be used: a bad URL, a missing driver, not a monitor's database, or
    another monitor already following the same folder with it."""


class ProfileError(SlmcnnError):
    """A camera file or profile that cannot be built or used: not a camera.json, too few or
    mismatched frames, a corrupt or foreign profile file, a profile built with another model."""
