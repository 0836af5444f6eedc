"""The REST API: thin CRUD over the database; anything touching a BMC becomes a command."""
