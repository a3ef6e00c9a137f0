"""One module per schema change, in the order of their down_revision."""
