"""API v1.1, the part real clients still read: a job's details with its steps, and step output."""
