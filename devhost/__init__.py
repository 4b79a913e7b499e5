"""Run the Functions app (Python v2 model) on one machine without the Functions host.

`python -m devhost` reads `app.get_functions()` and drives timers (NCRONTAB), Service Bus triggers fed
from the local SQLite bus, and HTTP routes with function keys. `DevHost` is the library form, for the
demo and tests, which can drive time themselves with a ManualClock.
"""
