"""Jobs: details by number, canceling, artifacts and test results."""
