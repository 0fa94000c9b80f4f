// dense kernel tests: not written yet.
