"""Host tools: node bootstrap (common bridges, OVSDB for the controller) and the executors
that run a command here, in a namespace or over SSH."""
