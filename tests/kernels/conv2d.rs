// conv2d kernel tests: not written yet.
