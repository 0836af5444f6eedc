"""The fetcher worker: downloads firmware binaries and OS images from their source URLs."""
