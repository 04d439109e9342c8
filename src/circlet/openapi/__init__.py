"""The official CircleCI API v2 spec (our contract) and the subset circlet serves."""
