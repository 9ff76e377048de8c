"""Multi-run studies built on the trainer (`probes.train.loop.run`): the architecture study and the
hybrid-tiny diagnosis. Library code: never imports `probes.cli`."""
