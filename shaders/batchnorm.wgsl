// batchnorm: not written yet
