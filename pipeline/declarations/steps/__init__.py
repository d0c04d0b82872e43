"""The steps: one declaration per artifact kind (its builder, named inputs and outputs, the parameters it
reads, the family and tools it needs). Formats (declarations/formats.py) group them into Triton folders."""
