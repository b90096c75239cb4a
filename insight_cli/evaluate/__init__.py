"""`insight evaluate`: full episodes with raw game scores (docs/design.md §11)."""
