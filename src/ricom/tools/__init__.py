"""Tools built on the API: the benchmark (`bench`) and the paper report (`report`)."""
