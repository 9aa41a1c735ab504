"""Operator tools: what became of a gateway event, dead letters, and their retry."""
