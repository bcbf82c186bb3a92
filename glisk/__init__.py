"""The GLISK backend project package: settings, URLs, WSGI/ASGI, health, embedded database."""
