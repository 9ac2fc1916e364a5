"""Config specs of the crf layers and data kinds (registered into the vocabulary)."""
