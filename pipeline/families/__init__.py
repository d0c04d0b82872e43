"""Model families: how each loads, what its graphs look like, how they are checked."""
