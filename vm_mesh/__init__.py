"""vmesh host side: CLI, configuration, discovery, policy files, systemd and the demo."""

# The one place the version is written: the build reads it from here (pyproject.toml's
# dynamic version), so `vmesh --version`, the version a proxy announces and the wheel's agree.
# A literal, not a lookup in the installed metadata: importlib.metadata, with the email and
# zipfile modules it brings, was 0.8 MB of every proxy.
__version__ = "0.1.0"
