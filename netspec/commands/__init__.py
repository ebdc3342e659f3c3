"""CLI subcommands beyond `check`. Each module offers `add_arguments(parser)`, which sets `func`,
and imports JAX only inside that function, so listing commands stays fast."""
