"""Host lifecycle: systemd units, launching an app with its proxy, joining a host to the mesh."""
