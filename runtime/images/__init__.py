"""vggsim.images."""
