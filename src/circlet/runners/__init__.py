"""The server side of the runner protocol (docs/runner-protocol.md) and runner tokens."""
