"""The shipped AudioNet checkpoint (installed as the ``pianonotes.models`` package data)."""
