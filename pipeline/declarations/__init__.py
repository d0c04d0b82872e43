"""What to build: the manifest schema and cache, paths and names, the artifact kinds."""
