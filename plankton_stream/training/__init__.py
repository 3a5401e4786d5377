"""Learning from export files: paired data, augmentations, contrastive pretraining, the
image-only self-supervised baseline."""
