"""Scale-out with Dask: the client (`client`) and the worker tasks (`tasks`)."""
