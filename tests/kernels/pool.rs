// pool kernel tests: not written yet.
