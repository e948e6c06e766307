"""`python -m onestep`: the CLI through the interpreter at hand (the rules' way, no PATH needed)."""

from onestep.cli import main

main()
