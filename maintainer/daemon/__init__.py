"""The always-on container: scheduler, run hooks, health and metrics server.

Import the parts from their modules; this package imports nothing heavy so
``maintainer run`` (which uses ``hooks``) stays quick.
"""
