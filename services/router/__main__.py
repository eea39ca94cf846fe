"""`python -m clawmesh_router` / `clawmesh-router`: run the router service alone."""

from clawmesh.bus import service_main

from .app import Router


def main() -> None:
    service_main(Router)


if __name__ == "__main__":
    main()
