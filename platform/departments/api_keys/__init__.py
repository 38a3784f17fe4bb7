"""Department API keys: the model (stored hashed), their services, the portal pages, the console
page, and how a REST call is let in (authentication, throttle, scopes)."""
