"""Merge strategies: how a parameter changed differently on several branches is combined."""
