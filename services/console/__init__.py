"""The officers' console: a web application in Bahasa Indonesia for the PK (pembimbing
kemasyarakatan, the community-corrections officer), the Kasubsi (their supervisor) and the
Kepala Bapas (head of the office).

Server-rendered pages (FastAPI, Jinja2, plain forms and a little script of our own; every
asset is served from here). The console holds no data and no rules: it reads and writes
only through the services' public HTTP APIs, with the signed-in officer's own token, so
every rule and every office boundary stays in the service that owns it. It is not a bounded
context and publishes no events.
"""
