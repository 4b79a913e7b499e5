"""Thin triggers: parse the input, call a handler from bootstrap's container, shape the output. No logic."""
