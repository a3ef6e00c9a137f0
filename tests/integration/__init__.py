"""Modules together in this process: the commands (run_cli), the pipeline over the tiny
generated build, a few steps of training, the shipped model, the monitor and the app on SQLite (and
PostgreSQL where SLMCNN_TEST_POSTGRES names a server: those runs are marked slow); or a second or more."""
