// pool: not written yet
