"""The request-location monitor: a small HTTP service that counts where each service's requests come from.

Load balancers (or services) post ``{service, latitude, longitude, count}`` items; the control loop reads the
counts of a recent window through ``usm.collectors.requests`` and places replicas near the callers. ``counts``
holds the bounded, bucketed aggregation (pure: time is a parameter), ``items`` reads and checks posted bodies,
and ``server`` is the aiohttp adapter that alone does I/O and reads the clock. Started by
``usm location-monitor``.
"""
