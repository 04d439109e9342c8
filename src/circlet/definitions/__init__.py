"""The Pipeline Definition and Trigger tags: what a project builds, and what starts it."""
