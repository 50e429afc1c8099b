"""Writing results: atomic files, HDF5/TIFF/NumPy/PNG outputs, display contrast."""
