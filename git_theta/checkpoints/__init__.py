"""Checkpoint formats: each module reads one file format into parameter groups and writes it back."""
