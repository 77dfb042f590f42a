"""vggsim.model."""
