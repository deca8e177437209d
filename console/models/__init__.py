"""Headless view models: filtering, ordering and aggregation, testable without Textual."""
