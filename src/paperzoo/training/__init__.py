"""Training: the bundled data, the loop, checkpoints and multi-process runs behind `paperzoo train`."""
