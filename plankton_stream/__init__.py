"""plankton-stream: live plankton classification for CytoSense imaging flow cytometers.

Cross-modal (image + pulse profile) embeddings, k-NN against a small labelled gallery,
streamed over ZeroMQ from the instrument's export files.
"""

__version__ = "0.1.0"
