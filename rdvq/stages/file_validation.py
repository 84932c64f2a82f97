"""Validation on real files, for stages whose deployed quantization differs from their training
surrogate: every validation image is compressed to a file and decoded by the codec as it would be
deployed (:mod:`rdvq.evaluation`), so PSNR and bpp are what users get, not a surrogate's estimate."""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics import MeanMetric

from rdvq.codec import ImageCodec, LatentCodec
from rdvq.encode_options import EncodeOptions
from rdvq.evaluation import evaluate


class FileValidation(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.psnr = MeanMetric()
        self.ms_ssim_db = MeanMetric(nan_strategy="ignore")
        self.bpp = MeanMetric()
        self.bpp_estimated = MeanMetric()
        self.exact = MeanMetric()
        self._codec: ImageCodec | None = None
        self._options = EncodeOptions()

    def begin(self, latent: LatentCodec, options: EncodeOptions) -> None:
        """Start an epoch with ``latent`` as it stands (its coding tables must be up to date)."""
        self._codec = ImageCodec(latent)
        self._options = options

    def update(self, images: torch.Tensor) -> torch.Tensor:
        """Evaluate a batch of (3, H, W) images; returns the decoder's reconstructions."""
        result = evaluate(self._codec, [(f"val{i}", image) for i, image in enumerate(images)], options=self._options, estimate=True)
        for row in result.images:
            self.psnr.update(row.psnr)
            self.ms_ssim_db.update(float("nan") if row.ms_ssim_db is None else row.ms_ssim_db)
            self.bpp.update(row.bpp)
            self.bpp_estimated.update(row.estimated_bpp)
            self.exact.update(float(row.exact))
        return torch.stack([self._codec.decompress(self._codec.compress(image, self._options)) for image in images])

    def end(self) -> dict[str, torch.Tensor]:
        """The epoch's metrics, then reset."""
        metrics = {
            "val/psnr": self.psnr.compute(),
            "val/ms_ssim_db": self.ms_ssim_db.compute(),
            "val/bpp_real": self.bpp.compute(),
            "val/bpp_estimated": self.bpp_estimated.compute(),
            "val/bit_exact": self.exact.compute(),
        }
        for metric in (self.psnr, self.ms_ssim_db, self.bpp, self.bpp_estimated, self.exact):
            metric.reset()
        self._codec = None
        return metrics
