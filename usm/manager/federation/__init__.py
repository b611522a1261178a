"""Federation: a master and regional workers that share one PostgreSQL store and talk through it only.

* ``partition``: what one manager sees and may act on (its regions' hosts and services), and why the regions'
  engines together decide what one engine would (pure);
* ``supervision``: heartbeats, the countdown that marks a worker down, and which regions change hands (pure);
* ``sequences``: the start and stop sequences of a master and a worker as ordered plans, and their executor;
* ``coordinator``: the store side of a running manager (registration, heartbeats, leases, policy versions, stop
  requests) and the actuator that acts only under its region's lease;
* ``manager``: the federated runner, one control-loop cycle at a time, for ``usm master`` and ``usm worker``;
* ``simulation``: the simulator's world split among regional managers, cycle for cycle against one node.
"""
