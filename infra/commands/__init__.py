"""CLI subcommands: each module defines ``register(subparsers)``; ``infra.cli`` finds them."""
