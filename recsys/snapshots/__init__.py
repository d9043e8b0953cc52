"""Versioned candidate snapshots in Redis: key names, codec, connection, writer, reader."""
