// dropout: not written yet
