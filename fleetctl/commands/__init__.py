"""The fleetctl commands, one module per command or close family."""
