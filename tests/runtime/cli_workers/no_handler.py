"""A module with no handler: loading it must list the accepted shapes."""

GREETING = "hello"
