"""vmesh host side: CLI, configuration, discovery, policy files, systemd and the demo."""

from importlib import metadata

try:
    # the installed distribution's version: one source (pyproject.toml), so `vmesh --version`
    # and the version a proxy announces are those of the wheel a host runs
    __version__ = metadata.version("vmesh")
except metadata.PackageNotFoundError:  # run from a source tree that is not installed
    __version__ = "0+unknown"
