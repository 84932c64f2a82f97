"""The command names of the ``rdvq`` entry point, shared by the dispatcher and the training CLI
(so neither imports the other)."""

TRAINING_COMMANDS = ("fit", "validate", "test")
CODEC_COMMANDS = ("compress", "decompress")
