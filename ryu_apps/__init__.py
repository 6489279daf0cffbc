"""Apps a tenant may run on its own bridges (see README.md)."""
