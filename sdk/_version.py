"""The installed version of Millstream, read from the distribution's metadata."""

from importlib import metadata

try:
    __version__: str = metadata.version("millstream")
except metadata.PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
