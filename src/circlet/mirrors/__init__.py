"""Bare mirrors of projects' repositories, which the engine reads configs from and pipelines resolve
refs in; every fetch passes the rules of ``circlet.reach``."""
