// occlusion: not written yet
