// pad kernel tests: not written yet.
