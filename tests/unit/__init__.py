"""One module's behaviour in this process, on tiny generated arrays, files or the tiny model: no
command, no generated build, no training, no database, no server, no other process; each under a second."""
