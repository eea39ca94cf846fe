"""The `clawmesh` command."""


def main() -> None:
    print("clawmesh")
