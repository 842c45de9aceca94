"""CLI subcommands: each module here defines ``register(subparsers)``; ``infra.cli`` finds them all."""
