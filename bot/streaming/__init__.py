"""The streaming policy: per-stream buffers, LocalAgreement-2 commits, and batched scheduling."""
