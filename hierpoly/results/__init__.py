"""Where results live: codec (the value format), store (results by config key), bundles (sharing them)."""
