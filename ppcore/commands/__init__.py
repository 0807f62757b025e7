"""Sub-commands of ``python -m ppcore``."""
