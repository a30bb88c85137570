"""Model zoo: every model is registered by name (see :mod:`shoal.models.registry`)."""

from shoal.models import bag, bytecnn, dcn, dlrm, logistic, mlp  # noqa: F401  (each registers itself on import)
from shoal.models.registry import available, build, register

__all__ = ["available", "build", "register"]
