"""Recurrent layers (rnn, lstm, gru) built only from gate equations, unrolled over time."""
