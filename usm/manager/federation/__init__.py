"""Federation: a master and regional workers that share one PostgreSQL store and talk through it only.

* ``partition``: what one manager sees and may act on (its regions' hosts and services), and why the regions'
  engines together decide what one engine would (pure);
* ``supervision``: heartbeats, the countdown that marks a worker down, and which regions change hands (pure);
* ``sequences``: the start and stop sequences of a master and a worker as ordered plans, and their executor;
* ``coordinator``: the store side of a running manager (registration, heartbeats, supervision, the regions it
  holds, policy versions, stop requests) and the actuator that acts only under its regions' leases;
* ``manager``: the federated runner (``usm run``'s live loop plus the checks between cycles) and its pulse thread;
* ``live``: the collectors of the hosts a manager holds, and the actuators over the site's hosts;
* ``ports``: the sequences' ports over the store, the hosts' Docker engines and EC2;
* ``roles``: ``usm master`` and ``usm worker`` from start to stop;
* ``simulation``: the simulator's world split among regional managers, cycle for cycle against one node.
"""
