"""The Litestar HTTP API and the web page; it talks to the actors only over NATS."""
