"""Database operations on posts and comments."""
