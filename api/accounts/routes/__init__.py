"""The account routes: /register, /token, /login, /logout, /users and API keys."""
