"""Calibration from the data: pattern centre, descan, scan–detector rotation and flip."""
