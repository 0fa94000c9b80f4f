// pad: not written yet
