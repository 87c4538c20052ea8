"""What every route runs on: the server (uvicorn, gunicorn), prestart, timeouts, middleware,
metrics, logging, security headers, body limits. May import api.db; never the contexts above it."""
