"""Owned background tasks (`TaskOwner`): defined in `device_drivers.tasks`, the lowest layer, so
that drivers and the gateway share the one helper; see there."""

from device_drivers.tasks import DeathReport, TaskOwner, describe, report_deaths_here

__all__ = ["DeathReport", "TaskOwner", "describe", "report_deaths_here"]
