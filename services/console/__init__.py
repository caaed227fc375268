"""The operators' console: a web page of the grid, served by a server of the grid (services/console).

What others need to find it, without importing the server: its IceGrid server id and the
property in which it publishes its URL (read through IceGrid's admin, like PushGrid.Metrics.Url).
"""

SERVER_ID = "Console-1"  # icegrid/pushgrid.xml: the one instance, on node1
URL_PROPERTY = "PushGrid.Console.Url"
HEALTH_PATH = "/healthz"  # answers 200 without a login (patch/health.py): it says nothing else
