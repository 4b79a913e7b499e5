"""The floor: events, errors, settings, ports and the embedded adapters. Imports nothing above it."""
