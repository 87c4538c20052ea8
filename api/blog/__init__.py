"""The blog of the book's chapters 3 to 6: posts, comments, their CRUD and schemas.

May import api.accounts (authors, ownership), api.db and api.platform; never api.inference.
"""
