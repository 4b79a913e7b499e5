"""What `app.get_functions()` declares, read once into plain values devhost can drive.

App-setting references (`%NAME%`) in schedules and entity names are resolved from the settings, as
the Functions host does; a missing setting fails start-up naming it and the function.
"""
from __future__ import annotations

import asyncio
import importlib
import inspect
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from core.errors import ConfigurationError
from devhost.ncrontab import CronSchedule
from devhost.routes import Route

TIMER, SERVICE_BUS, HTTP = "timerTrigger", "serviceBusTrigger", "httpTrigger"
_SETTING_REF = re.compile(r"%([^%]+)%")


@dataclass(frozen=True)
class Function:
    name: str
    trigger: str
    arg: str  # the user function's parameter the trigger binds to
    user_function: Callable[..., Any]

    def __call__(self, value: Any) -> Any:
        result = self.user_function(**{self.arg: value})
        if inspect.isawaitable(result):
            result = asyncio.run(_await(result))
        return result


@dataclass(frozen=True)
class TimerFunction(Function):
    schedule: CronSchedule
    run_on_startup: bool


@dataclass(frozen=True)
class BusFunction(Function):
    entity: str  # a queue name or "topic/subscriptions/name", as SqliteBus.receive takes it
    queue: str | None
    topic: str | None
    subscription: str | None


@dataclass(frozen=True)
class HttpFunction(Function):
    route: Route
    methods: frozenset[str] | None  # None: every method
    auth_level: str  # anonymous | function | admin


def load_app(spec: str) -> Any:
    """`module:attr` -> the FunctionApp object."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigurationError(f"--app must look like module:attr, got {spec!r}")
    app = getattr(importlib.import_module(module_name), attr, None)
    if app is None or not hasattr(app, "get_functions"):
        raise ConfigurationError(f"{spec!r} is not a FunctionApp (no get_functions())")
    return app


def load_functions(app: Any, settings: Mapping[str, str]) -> list[Function]:
    """Call `app.get_functions()` (it may be called only once per app) and read every trigger."""
    loaded = [_load(fn, settings) for fn in declared_functions(app)]
    names = [f.name for f in loaded]
    if len(set(names)) != len(names):
        raise ConfigurationError(f"function names must be unique: {sorted(names)}")
    return loaded


def declared_functions(app: Any) -> list[Any]:
    try:
        return app.get_functions()
    except ValueError:
        # azure-functions 1.26 refuses a second get_functions() on one app (e.g. a test fixture called it
        # first). Its builders keep the Function objects the first call validated: reuse those.
        # A genuinely duplicated name still fails, in load_functions' uniqueness check.
        builders = getattr(app, "_function_builders", None)
        if not builders or not getattr(app, "functions_bindings", None):
            raise
        return [builder._function for builder in builders]


def resolve(text: str, settings: Mapping[str, str], where: str) -> str:
    """Replace every %NAME% with the app setting NAME."""
    def lookup(match: re.Match[str]) -> str:
        value = settings.get(match.group(1))
        if value is None or value == "":
            raise ConfigurationError(f"app setting {match.group(1)!r} is not set (used by {where})")
        return value
    return _SETTING_REF.sub(lookup, text)


def _load(fn: Any, settings: Mapping[str, str]) -> Function:
    name = fn.get_function_name()
    trigger = fn.get_trigger()
    if trigger is None:
        raise ConfigurationError(f"function {name!r} has no trigger")
    raw = trigger.get_dict_repr()
    kind = raw["type"]
    _check_bindings(name, fn, kind)
    user = fn.get_user_function()
    _check_parameters(name, user, trigger.name)
    common = dict(name=name, trigger=kind, arg=trigger.name, user_function=user)
    where = f"function {name!r}"
    if kind == TIMER:
        try:
            schedule = CronSchedule.parse(resolve(raw["schedule"], settings, where))
        except ValueError as exc:
            raise ConfigurationError(f"{where}: {exc}") from exc
        return TimerFunction(**common, schedule=schedule, run_on_startup=bool(raw.get("runOnStartup")))
    if kind == SERVICE_BUS:
        return _bus_function(common, raw, settings, where)
    if kind == HTTP:
        methods = raw.get("methods")
        return HttpFunction(**common, route=Route.parse(raw.get("route") or name),
                            methods=frozenset(_text(m).upper() for m in methods) if methods else None,
                            auth_level=_text(raw.get("authLevel") or "function").lower())
    raise ConfigurationError(f"{where}: devhost does not run {kind!r} triggers (timer, Service Bus and HTTP only)")


def _bus_function(common: dict[str, Any], raw: Mapping[str, Any], settings: Mapping[str, str],
                  where: str) -> BusFunction:
    if raw.get("isSessionsEnabled"):
        raise ConfigurationError(f"{where}: session-enabled Service Bus triggers are not supported by devhost")
    if _text(raw.get("cardinality") or "one").lower() != "one":
        raise ConfigurationError(f"{where}: batch (cardinality many) Service Bus triggers are not supported")
    if raw.get("queueName"):
        queue = resolve(raw["queueName"], settings, where)
        return BusFunction(**common, entity=queue, queue=queue, topic=None, subscription=None)
    topic = resolve(raw["topicName"], settings, where)
    subscription = resolve(raw["subscriptionName"], settings, where)
    return BusFunction(**common, entity=f"{topic}/subscriptions/{subscription}", queue=None, topic=topic,
                       subscription=subscription)


def _check_bindings(name: str, fn: Any, kind: str) -> None:
    """Only the trigger (and an HTTP function's `$return`) can be fed locally; say so up front."""
    for binding in fn.get_bindings():
        raw = binding.get_dict_repr()
        if raw["type"] == kind or (kind == HTTP and raw["type"] == "http"):
            continue
        raise ConfigurationError(f"function {name!r}: devhost does not support the {raw['type']!r} binding "
                                 f"{raw.get('name')!r}; publish through the Publisher port instead")


def _check_parameters(name: str, user: Callable[..., Any], arg: str) -> None:
    params = inspect.signature(user).parameters
    if arg not in params:
        raise ConfigurationError(f"function {name!r}: trigger binds {arg!r} but the function has no such parameter")
    unbound = [p for p, spec in params.items() if p != arg and spec.default is inspect.Parameter.empty]
    if unbound:
        raise ConfigurationError(f"function {name!r}: parameters {unbound} are bound to nothing devhost provides")


def _text(value: Any) -> str:
    """Binding enums (AuthLevel, HttpMethod, Cardinality) by their value, as function.json writes them."""
    return str(getattr(value, "value", value))


async def _await(awaitable: Any) -> Any:
    return await awaitable
