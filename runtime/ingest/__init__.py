"""vggsim.ingest."""
