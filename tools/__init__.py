"""Development tools: `make run` (tools.run), the Azurite launcher and the Graph stand-in; never deployed."""
