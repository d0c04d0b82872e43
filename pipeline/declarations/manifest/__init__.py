"""The manifest: its schema (schema.py), how a pydantic complaint becomes a paragraph (wording.py), the
`custom=` form (custom.py), resolution into model records (records.py), and the cache that lets a no-op
`doit` skip all of it (cache.py). Importing this package imports none of them."""
