"""Errors a user can cause. The CLI prints them as one line and exits non-zero; anything else is a bug."""


class SlmcnnError(Exception):
    """Base class: a problem with the user's input or settings, not with slmcnn."""

    exit_code = 2


class ImageReadError(SlmcnnError):
    """A file that is missing, unreadable, truncated or not an image."""


class DataError(SlmcnnError):
    """A data set that cannot be used: empty, wrong layout, unknown labels, wrong patch size."""


class ModelFileError(SlmcnnError):
    """A model file that is missing, corrupt, from another version or of an unknown architecture."""


class SettingsError(SlmcnnError):
    """Impossible settings: negative counts, a patch larger than the image, an occupied folder."""
