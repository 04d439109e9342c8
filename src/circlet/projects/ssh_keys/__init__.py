"""A project's SSH keys: key pairs and fingerprints, and the additional keys users bring."""
