"""Training: the one loop (``Trainer``) with its step engines, callbacks, resumable
checkpoints, the background runner, the learning-rate finder and the single steps
(``evaluate``, ``train_step``, ``compute_gradients``)."""
