"""Benchmarks of the whole Jobplane pipeline against the local infrastructure."""
