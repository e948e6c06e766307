"""Registry of one-step methods: `METHODS[name](cfg, ctx, seed)`, all with the contract in base.py."""

from onestep.methods.curriculum import Curriculum

METHODS = {"curriculum": Curriculum}

__all__ = ["METHODS"]
