"""Validation on real files: the one validation part of every stage that can code.

Every validation image is compressed to a file and decoded by the codec exactly as a checkpoint of
this moment would deploy it (:meth:`~rdvq.stages.base.CodecStage.deployed_codec`), through
:func:`rdvq.evaluation.evaluate`, so PSNR and bpp are what users get, not a surrogate's estimate;
the model's estimate and the gap between the two come beside them. The epoch's rows are gathered
from every rank and aggregated by :func:`rdvq.evaluation.summarize`, the definition every other
report uses.
"""

from __future__ import annotations

import torch

from rdvq.codec import Encoded, ImageCodec
from rdvq.encode_options import EncodeOptions
from rdvq.evaluation import ImageResult, evaluate, gather, summarize

# summarize() key -> logged name (``val/bpp_real`` is what checkpoint callbacks monitor)
LOGGED = {
    "psnr": "val/psnr", "ms_ssim_db": "val/ms_ssim_db", "bpp": "val/bpp_real", "estimated_bpp": "val/bpp_estimated",
    "bpp_gap_percent": "val/bpp_gap_percent", "bit_exact": "val/bit_exact",
}


class FileValidation:
    def __init__(self) -> None:
        self._codec: ImageCodec | None = None
        self._options = EncodeOptions()
        self._results: list[ImageResult] = []
        self.symbols: list[list[torch.Tensor]] = []  # the epoch's coded symbols, image by image

    def begin(self, codec: ImageCodec, options: EncodeOptions) -> None:
        self._codec, self._options = codec, options
        self._results, self.symbols = [], []

    def update(self, images: torch.Tensor) -> torch.Tensor:
        """Code a batch of (3, H, W) images; returns the decoder's reconstructions."""
        decoded: list[torch.Tensor] = []

        def keep(encoded: Encoded, image: torch.Tensor) -> None:
            self.symbols.append([s.cpu() for s in encoded.symbols])
            decoded.append(image)

        offset = len(self._results)
        named = [(f"val{offset + i}", image) for i, image in enumerate(images)]
        self._results += evaluate(self._codec, named, options=self._options, estimate=True, observe=keep).images
        return torch.stack(decoded).to(images)

    def end(self) -> dict[str, float]:
        """The epoch's logged metrics over every rank's images, then reset."""
        summary = summarize(gather(self._results))
        self.symbols = gather(self.symbols)
        self._codec, self._results = None, []
        return {name: summary[key] for key, name in LOGGED.items() if summary[key] is not None}
