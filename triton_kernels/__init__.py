"""Triton kernels for rdvq. Importing this package does not import Triton; the kernels live in
:mod:`triton_kernels.probability`, which is imported only where a kernel is about to run.

:mod:`rdvq.coding.engine` decides when to use them (CUDA tensors, or ``TRITON_INTERPRET=1`` for
Triton's CPU interpreter) and imports nothing from this file, so the package also works where an
older editable install registered ``triton_kernels`` as a namespace package.
"""
