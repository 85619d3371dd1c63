"""Plays scenarios for real: builds images, starts the registry and daemons, drives clients."""
