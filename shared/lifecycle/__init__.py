"""Lifecycles of the entities that work moves through: how each starts, what marks a command as
stale, how it finishes or fails, and the events each step stages. The API starts work through
these modules and the workers finish it through them, so a reader finds a whole lifecycle in one
file."""
