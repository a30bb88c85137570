"""``shoal ui``: a local web app over the registry (runs, a run's page, comparisons, models and aliases)."""

from shoal.ui.app import create_ui_app

__all__ = ["create_ui_app"]
