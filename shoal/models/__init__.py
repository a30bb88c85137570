"""Model zoo: every model is registered by name (see :mod:`shoal.models.registry`)."""

from shoal.models import bag, bytecnn, dcn, dlrm, logistic, mlp  # noqa: F401  (each registers itself on import)
from shoal.models.registry import available, build, init_output_bias, register

__all__ = ["available", "build", "init_output_bias", "register"]
