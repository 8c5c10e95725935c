"""Evaluation: WER, latency and speed of the streaming system."""
