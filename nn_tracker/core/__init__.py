"""The base: errors, input checks, clocks, units, the node's identity, reading users' files."""
