"""The blog routes: /posts and /comments."""
