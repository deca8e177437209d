"""The vmesh console: a Textual terminal UI and plain CLI views over proxies' admin APIs.

Nothing here imports the proxy: every byte the console shows comes from an
admin API (DESIGN.md), over a local unix socket or mTLS to a remote host.
"""
