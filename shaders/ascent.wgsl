// ascent: not written yet
