"""circlet: a self-hosted implementation of the CircleCI platform."""

__version__ = "0.1.0"
