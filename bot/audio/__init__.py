"""Audio sources: decoding files to mono float32 at 16 kHz, and the bundled demo sample."""
