"""The Azure Functions app: registers the blueprints, nothing else."""

import azure.functions as func

from functions.archive_timer import bp as archive_bp
from functions.chat import bp as chat_bp
from functions.export import bp as export_bp
from functions.groups import bp as groups_bp
from functions.health import bp as health_bp
from functions.imports import bp as imports_bp
from functions.search import bp as search_bp
from functions.sessions import bp as sessions_bp
from functions.shares import bp as shares_bp
from functions.usage import bp as usage_bp

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

for blueprint in (
    chat_bp,
    sessions_bp,
    search_bp,
    export_bp,
    usage_bp,
    imports_bp,
    health_bp,
    archive_bp,
    shares_bp,
    groups_bp,
):
    app.register_functions(blueprint)
