"""STC (server-to-client): the device connection tier. See PROTOCOL.md for the device protocol."""
