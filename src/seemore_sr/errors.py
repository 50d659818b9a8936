"""The library's typed errors and warnings: fields, not flags.

Library code names its own parameters (``device``, ``outdir``, ``max_pixels``); the
command line and the web app turn the fields into their own words (flags, hints, page
text). Every class is also a ``ValueError`` / ``ImportError`` / ``UserWarning``, so code
that caught those before still does.
"""

from __future__ import annotations

__all__ = [
    "SeemoreError",
    "UsageError",
    "InputError",
    "OptionError",
    "DeviceError",
    "MissingExtra",
    "Refused",
    "PrecisionFallback",
    "require",
]


class SeemoreError(Exception):
    """Base of the library's own errors: the command line reports these in one line; any
    other exception is a bug and keeps its traceback."""


class UsageError(SeemoreError, ValueError):
    """Arguments that cannot be used together, or that name nothing usable (a command's, in words)."""


class InputError(SeemoreError, ValueError):
    """An image, array or tensor handed to the library that it cannot take, and why."""


class OptionError(SeemoreError, ValueError):
    """A value given for ``option`` that cannot be used, and why."""

    def __init__(self, option: str, value: object, reason: str) -> None:
        self.option, self.value, self.reason = option, value, reason
        super().__init__(f"{option}={value!r}: {reason}")


class DeviceError(OptionError):
    """A device that does not exist here (or is not a device)."""

    def __init__(self, value: object, reason: str) -> None:
        super().__init__("device", value, reason)


class MissingExtra(SeemoreError, ImportError):
    """A feature whose optional dependencies are not installed: ``pip install 'seemore-sr[extra]'``."""

    def __init__(self, extra: str, feature: str) -> None:
        self.extra, self.feature = extra, feature
        super().__init__(f"{feature} needs: pip install 'seemore-sr[{extra}]'")


def require(extra: str, feature: str, *modules: str) -> None:
    """Raise :class:`MissingExtra` now, before any work, when a module of ``extra`` is not installed."""
    from importlib.util import find_spec

    for name in modules:
        try:
            found = find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise MissingExtra(extra, feature)


class Refused(SeemoreError, ValueError):
    """One input refused before or instead of its upscale. ``remedy`` names the parameter
    that would change the outcome (``max_pixels``, ``fmt``, ``existing``, ``outdir``,
    ``suffix``, ``tile``, ``outscale``), or is None."""

    def __init__(self, reason: str, remedy: str | None = None) -> None:
        self.reason, self.remedy = reason, remedy
        super().__init__(reason)


class PrecisionFallback(UserWarning):
    """The precision asked for runs as another here (bf16 on a CPU without native bf16)."""

    def __init__(self, requested: str, used: str, why: str) -> None:
        self.requested, self.used, self.why = requested, used, why
        super().__init__(f"{requested} {why}, so {used} runs instead (force_precision=True insists on {requested})")
