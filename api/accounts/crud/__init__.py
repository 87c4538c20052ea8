"""Database operations on users, access tokens and API keys; routes call these, never raw
queries."""
