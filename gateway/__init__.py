"""clawmesh_gateway: the composition root, the one package that knows every service.

`registry` maps each service's name to its class (static imports: a service that cannot be
imported stops start-up with its ImportError, it is never skipped); `cli` is the `clawmesh`
command (the library's commands plus `up` and `service NAME`); `scripts` holds the per-service
console scripts (`clawmesh-ingress`, …). Nothing in libs/ or services/ imports this package.
"""
