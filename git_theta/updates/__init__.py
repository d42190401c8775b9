"""Update types: how a parameter group's new value is stored (whole, sparse, low-rank, ...)."""
