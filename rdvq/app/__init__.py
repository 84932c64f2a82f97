"""The application layer: command lines and the quickstart.

Only this package wires rdvq's core to the top-level ``datamodules``, ``callbacks`` and
``triton_kernels`` packages (which depend on the core, never the reverse).
"""
