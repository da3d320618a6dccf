"""One module per CLI command: compose-time glue around Hydra, no model maths."""
