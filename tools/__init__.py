"""Development tools: the local Functions host emulator and the Azurite launcher; never deployed."""
