"""Pure functions from domain values to documents people and programs read."""
