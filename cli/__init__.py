"""TuneForge: settings from the environment and the processes that run the service."""
