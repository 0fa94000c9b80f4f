// optim kernel tests: not written yet.
