"""Hyperprior parts both codec families use: CompressAI's entropy models as rdvq holds them
(:mod:`~rdvq.hyper.snapshot`, :mod:`~rdvq.hyper.bottleneck`) and the tiling of a hyper-synthesis
(:mod:`~rdvq.hyper.tiles`). HyperVQ (:mod:`rdvq.entropy.hypervq`) and the scalar codec
(:mod:`rdvq.sq`) build on them; neither lives under the other."""
