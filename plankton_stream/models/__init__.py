"""Encoders and losses (torch). Their specs are torch-free and live in `plankton_stream.specs`."""
