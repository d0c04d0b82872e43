"""The serving loop: published versions into a live Triton (`doit deploy`, `doit rollback`), and hand edits of a
published config.pbtxt moved into the manifest (`doit adopt-config`). Imported only by those commands."""
