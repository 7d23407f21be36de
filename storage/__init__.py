"""The storage layer: blob store, job database and result cache.

Each has an embedded default backend and a production one, chosen by configuration.
"""
