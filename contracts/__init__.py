"""Every message and body that crosses a process boundary, as msgspec Structs.

Pure data and validation: no I/O. JSON is the wire format so that `nats request`
users can type the messages by hand.
"""
