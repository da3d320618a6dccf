"""An example genlab family plugin (see its pyproject.toml and genlab's README, "Adding your own family")."""
