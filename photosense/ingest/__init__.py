"""Finding photos on disk, decoding them and reading their metadata."""
