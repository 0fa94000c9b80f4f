// dense: not written yet
