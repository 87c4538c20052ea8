"""Request and response bodies of posts and comments."""
