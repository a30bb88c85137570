"""``shoal compress``: students x precisions x backends, measured, the most accurate within a latency budget."""

from shoal.compress.search import CompressResult, StudentSpec, compress, default_students, validation_rows

__all__ = ["CompressResult", "StudentSpec", "compress", "default_students", "validation_rows"]
