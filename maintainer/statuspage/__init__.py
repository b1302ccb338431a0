"""The daemon's status page (``GET /``): what is protected, at a glance.

``data`` gathers a read-only view of the run history, the backup catalog and
the health report; ``charts`` draws inline SVG; ``render`` writes the HTML;
``page`` ties them to a running daemon. No JavaScript, no external assets,
no secret and no row data.
"""

from maintainer.statuspage.page import StatusPage

__all__ = ["StatusPage"]
