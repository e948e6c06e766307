"""onestep: an ablation pipeline for one-step diffusion generation."""

__version__ = "0.1.0"
