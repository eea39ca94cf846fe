"""The chaos test of issue 18: a real cluster on loopback under steady load and seeded faults.

`cluster` starts the processes (three clustered nats-servers, the services), `load` is the
users, `faults` the seeded schedule, `checker` reads back only what users received, and
`run` ties them together (`python -m tests.chaos`, `make chaos`). docs/testing.md says more.
"""
