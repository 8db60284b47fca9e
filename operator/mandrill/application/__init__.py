"""The application layer: what happens to a message from the moment it is seen, over ports."""
