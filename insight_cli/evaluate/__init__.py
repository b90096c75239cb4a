"""`insight evaluate`: full episodes with raw game scores (DESIGN §5)."""
