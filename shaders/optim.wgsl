// optim: not written yet
