"""`python -m clawmesh_gateway …` is `clawmesh …` (e.g. `python -m clawmesh_gateway service runner`)."""

from .cli import main

main()
