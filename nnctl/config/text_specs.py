"""Config specs of the text layers and data kinds (registered into the vocabulary)."""
