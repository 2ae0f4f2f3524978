"""fleetd's HTTP API v1: the original fleet's API, served from the registry mirror.

The pure parts (``schema``, ``pagination``, ``metrics``, ``discovery``) import
no HTTP library, so other roles may use ``metrics`` cheaply. ``server`` routes
requests, served by ``http`` on the listeners from ``listeners``. docs/api.md
describes every endpoint.
"""
