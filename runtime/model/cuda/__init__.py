"""vggsim.model.cuda."""
