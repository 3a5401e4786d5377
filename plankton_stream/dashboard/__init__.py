"""`plankton-stream dashboard`: a local web page of the live stream (board, feed, server, static/)."""
