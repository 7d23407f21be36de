"""Deployment definitions: JetStream streams and consumers, server configs.

Shipped as package data, so every process applies the same definitions on start.
"""
