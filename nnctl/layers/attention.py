"""Multi-head self-attention and the transformer encoder block."""
