"""vggsim.ray."""
