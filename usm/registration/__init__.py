"""Service registration and discovery: instances registered in etcd under leases, found by their distance.

``etcd`` is the adapter to etcd's JSON gateway, ``instance`` the registered values, ``registry`` registration,
keep-alive and the watched cache, ``selection`` the three pure ways of choosing an instance, ``buffer`` the request
locations on their way to the monitor, ``sidecar`` the ``usm registration-client`` HTTP service, and ``client``
the library a microservice imports to talk to its sidecar.
"""
