"""The ``twistd rolo`` plugin. It lives in a ``twisted/plugins`` directory, where :mod:`twisted.plugin`
looks for plugins, and loads :mod:`rolo.serving.twisted.tap` only when ``twistd rolo`` runs."""

from twisted.application.service import ServiceMaker

rolo = ServiceMaker(
    "rolo",
    "rolo.serving.twisted.tap",
    "Serve a rolo application (HTTP and WebSockets): --app package.module:attribute",
    "rolo",
)
