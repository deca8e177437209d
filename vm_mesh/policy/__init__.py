"""Traffic policy files: YAML documents in `policy.d/`, validated and loaded into a PolicySet."""
