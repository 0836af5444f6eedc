"""Message contracts: streams and consumers, subjects, command and event payloads, publishing."""
