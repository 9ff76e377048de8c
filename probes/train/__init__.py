"""The probe trainer: embedding resize, training loop, evaluation, run directories."""
