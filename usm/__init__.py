"""usm: a rule-engine-centric policy manager for microservices on cloud and edge hosts."""

__version__ = "0.1.0"
