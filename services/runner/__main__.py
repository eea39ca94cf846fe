"""`python -m clawmesh_runner` / `clawmesh-runner`: run the runner service alone."""

from clawmesh.bus import service_main

from .app import Runner


def main() -> None:
    service_main(Runner)


if __name__ == "__main__":
    main()
