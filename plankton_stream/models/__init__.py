"""Encoders and losses (torch). `spec` is torch-free and may be imported anywhere."""
