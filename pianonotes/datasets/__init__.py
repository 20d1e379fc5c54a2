"""Datasets: synthetic renders, MSMD, downloads, recordings in memory."""
