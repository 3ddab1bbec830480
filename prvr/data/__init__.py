"""Training and evaluation data: a split's features and captions as a torch dataset, and its batching."""
