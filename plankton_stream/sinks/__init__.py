"""Consumers of the published stream: the live terminal view, the lossless logger."""
