"""The `modex` command line: the outer layer that wires node/ (the core), app/ (the web UI) and
ml/ (training, evaluation, inference) together. node/ never imports this package."""
