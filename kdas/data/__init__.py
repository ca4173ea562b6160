"""Re-ID data: on-disk layouts, the synthetic generator, transforms, samplers."""

from kdas.data.records import ImageRecord, ReIDSplits

__all__ = ["ImageRecord", "ReIDSplits"]
