"""Registry of one-step methods: `METHODS[name](cfg, ctx, seed)`, all with the contract in base.py."""

from onestep.methods.curriculum import Curriculum
from onestep.methods.dmd2 import DMD2
from onestep.methods.drifting import Drifting
from onestep.methods.meanflow import MeanFlow
from onestep.methods.reflow import Reflow
from onestep.methods.shortcut import Shortcut
from onestep.methods.tdm import TDM

METHODS = {"curriculum": Curriculum}
METHODS |= {"reflow": Reflow, "meanflow": MeanFlow, "dmd2": DMD2, "shortcut": Shortcut, "drifting": Drifting, "tdm": TDM}

__all__ = ["METHODS"]
