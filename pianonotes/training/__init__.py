"""Training and evaluation: batches, the training loop, metrics, evaluation."""
