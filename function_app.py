"""The Azure Functions app (Python v2 model): registers the blueprints, nothing else.

Importing this module must stay fast (cold start): blueprints only declare triggers; adapters and
heavy libraries are built on first use by `bootstrap`.
"""
import azure.functions as func

from functions import alerts, audit, checks, dashboard, health, lists, results, retrain, schedule

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
for blueprint in (schedule.bp, checks.bp, alerts.bp, retrain.bp, health.bp, lists.bp, dashboard.bp, results.bp,
                  audit.bp):
    app.register_functions(blueprint)
