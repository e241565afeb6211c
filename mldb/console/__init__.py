"""The console: a read-only web view of models, versions, drift, monitors, lineage, tables and
predictions, for everyone who is not writing SQL (SPEC section 12).

    mldb ui shop.db [--host 127.0.0.1] [--port 8765] [--password-file F]
    mldb serve shop.db --ui-port 8765          # beside the wire server, on the same database

Every page is a function of the catalog (``mldb.console.pages.page``) returning plain data: the
HTML route renders it with a Jinja2 template (autoescaped), the JSON twin under ``/api/`` returns
it as it is. Charts are SVG drawn on the server (``/charts/...``), so no page needs JavaScript.
Built on Starlette (a small, maintained ASGI toolkit: routing, responses, middleware, templates)
served by uvicorn; nothing here writes to the database.
"""

from mldb.console.app import create_app

__all__ = ["create_app"]
