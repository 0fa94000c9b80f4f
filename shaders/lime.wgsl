// lime: not written yet
