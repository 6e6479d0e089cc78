"""Adapters to frameworks; each imports its framework only when imported itself."""
