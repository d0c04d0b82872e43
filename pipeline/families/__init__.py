"""Model families, one module each: what the family is (its declaration, read when dodo.py loads) and how
its models load, export and are checked (functions importing torch only when a builder calls them).

This file imports nothing: a builder handed the YOLO26 declaration must not depend on MobileCLIP2's code.
The registry of every family is declarations/families.py.
"""
