"""`python -m clawmesh_ingress` / `clawmesh-ingress`: run the ingress service alone."""

from clawmesh.bus import service_main

from .app import Ingress


def main() -> None:
    service_main(Ingress)


if __name__ == "__main__":
    main()
