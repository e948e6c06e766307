"""Registry of one-step methods: `METHODS[name](cfg, ctx, seed)`, all with the contract in base.py."""

from onestep.methods.cd import CD
from onestep.methods.ct import CT
from onestep.methods.ctm import CTM
from onestep.methods.curriculum import Curriculum
from onestep.methods.ddpm import DDPM
from onestep.methods.dmd2 import DMD2
from onestep.methods.drifting import Drifting
from onestep.methods.kd import KD
from onestep.methods.meanflow import MeanFlow
from onestep.methods.progressive import Progressive
from onestep.methods.reflow import Reflow
from onestep.methods.shortcut import Shortcut
from onestep.methods.tdm import TDM

METHODS = {
    "curriculum": Curriculum,
    # distillations of the teacher
    "kd": KD,
    "progressive": Progressive,
    "cd": CD,
    "ctm": CTM,
    "reflow": Reflow,
    "dmd2": DMD2,
    "tdm": TDM,
    # trained from data
    "ct": CT,
    "meanflow": MeanFlow,
    "shortcut": Shortcut,
    "drifting": Drifting,
}

TEACHERS = {"ddpm": DDPM}  # trained by the same loop, never a one-step student (not in METHODS)

__all__ = ["METHODS", "TEACHERS"]
