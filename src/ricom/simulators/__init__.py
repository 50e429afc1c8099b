"""Simulators: the built-in specimen, a Merlin detector server, event-file writers."""
