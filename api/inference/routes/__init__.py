"""The inference routes: /prediction, /object-detection (REST and WebSocket), /models, health,
the cache admin endpoint and the detection page."""
