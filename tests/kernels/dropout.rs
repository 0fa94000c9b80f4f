// dropout kernel tests: not written yet.
