"""The Matrix adapter: an application service acting as the desk bot and one ghost per visitor."""
