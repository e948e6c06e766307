"""Registry of one-step methods: `METHODS[name](cfg, ctx, seed)`, all with the contract in base.py."""

from onestep.methods.cd import CD
from onestep.methods.ct import CT
from onestep.methods.ctm import CTM
from onestep.methods.curriculum import Curriculum
from onestep.methods.kd import KD
from onestep.methods.progressive import Progressive

METHODS = {
    "curriculum": Curriculum,
    "kd": KD,
    "progressive": Progressive,
    "cd": CD,
    "ct": CT,
    "ctm": CTM,
}

__all__ = ["METHODS"]
