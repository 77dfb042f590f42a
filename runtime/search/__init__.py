"""vggsim.search."""
