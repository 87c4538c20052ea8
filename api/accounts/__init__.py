"""Accounts: users, login (token and cookie), API keys, CSRF, login limits, ownership, admins.

May import api.db and api.platform; never api.inference or api.blog.
"""
