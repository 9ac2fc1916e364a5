"""Config specs of the audio layers and data kinds (registered into the vocabulary)."""
