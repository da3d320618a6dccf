"""Lightning callbacks: sample grids, divergence guard, progress output."""
