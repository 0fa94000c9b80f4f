// batchnorm kernel tests: not written yet.
