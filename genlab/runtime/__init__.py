"""What a run needs around Hydra and Lightning: launching commands, sweeps, DDP re-launch rules, and the one
checkpoint -> (model, data, device) loader. State is passed explicitly, never kept in module globals."""
