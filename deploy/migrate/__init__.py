"""Aerich upgrades as the migrator: what is pending, and the child process that applies it."""
