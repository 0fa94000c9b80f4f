// softmax_xent kernel tests: not written yet.
