"""Benchmarks: DAVIS 2016/2017 scored with the official DAVIS measures, YouTube-VOS submissions.

- ``metrics``: J, F and their statistics (mean, recall, decay), exactly as the DAVIS challenge.
- ``datasets``: where a benchmark's frames and masks are.
- ``scoring``: per-sequence scores (cached), the summary and the official CSVs.
- ``inference``: run the propagation engine over a benchmark, saving palette PNGs.
- ``youtube_vos``: the submission zip.
- ``sharding``: ``--shard K/N``, split again over torchrun ranks (``seggpt_video.distributed``).
"""
