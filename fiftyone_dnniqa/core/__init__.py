"""The floor every layer stands on: images as tensors and compute devices."""
