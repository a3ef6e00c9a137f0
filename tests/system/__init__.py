"""Beyond this process, all marked slow (tests/conftest.py): another process (the console script, a
compile worker, a killed monitor), a browser, Ray, DDP training, an ahead-of-time compile, the
packaging and deploy files and their tools, the benchmark scripts."""
