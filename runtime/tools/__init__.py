"""vggsim.tools."""
