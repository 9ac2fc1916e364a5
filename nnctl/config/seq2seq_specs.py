"""Config specs of the seq2seq layers and data kinds (registered into the vocabulary)."""
