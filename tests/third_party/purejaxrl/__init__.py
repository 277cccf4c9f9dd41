"""purejaxrl's PPO scripts and wrappers, vendored unchanged but for the env line (see README.md)."""
