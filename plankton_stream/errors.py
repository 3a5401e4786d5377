"""The exception tree. The library raises these; the edges (CLI, stage loops) report them.

Every message should tell the operator what is wrong *and* what to do about it.
"""


class PlanktonStreamError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(PlanktonStreamError):
    """A configuration file or value is wrong (unknown key, wrong type, bad value)."""


class FormatError(PlanktonStreamError):
    """A whole export cannot be read (not a CytoSense export, unreadable, empty).

    Problems with single particles or rows are not raised: readers yield them as
    `ParticleError` items so that the good particles of the file are kept.
    """


class ChannelError(PlanktonStreamError):
    """An export lacks a channel the model needs (after applying the alias table)."""


class ImageError(PlanktonStreamError):
    """An image cannot be decoded or the particle cannot be located in it."""


class ConverterError(PlanktonStreamError):
    """The external `.cyz` converter failed or is not installed."""


class ModelError(PlanktonStreamError):
    """A model artefact is missing, incomplete or inconsistent."""


class EngineError(PlanktonStreamError):
    """An inference backend cannot be opened or failed (missing extra, bad engine)."""


class GalleryError(PlanktonStreamError):
    """A gallery is missing, empty, or was built with a different model."""


class EndpointError(PlanktonStreamError):
    """A socket the service must bind cannot be bound (address in use, no such host, bad path)."""
