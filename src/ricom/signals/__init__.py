"""Images derived from the COM field (FFT-iCOM, divergence, curl, E-field): plain NumPy functions."""
from ricom.signals.derived import curl, divergence, field_direction, field_magnitude, icom

__all__ = ["curl", "divergence", "field_direction", "field_magnitude", "icom"]
