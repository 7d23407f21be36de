"""The actor processes: each a NATS micro service plus a JetStream consumer."""
