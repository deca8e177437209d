"""vmesh host side: CLI, configuration, discovery, policy files, systemd and the demo."""

__version__ = "0.1.0"
