from importlib.metadata import PackageNotFoundError, version

__version__: str
"""The installed version of sidecar (``0+unknown`` in an uninstalled source tree)."""

try:
    __version__ = version("sidecar")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
