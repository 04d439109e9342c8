"""The runner agent: claims tasks from a circlet server over HTTP and runs their steps on this host.
It imports nothing of the server (docs/runner-protocol.md is the whole contract)."""
