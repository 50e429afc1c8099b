"""A Merlin detector on TCP: control and data ports serving real MIB frames (for trying and testing live input)."""
