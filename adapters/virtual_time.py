"""The virtual-time event loop, under the import path the README documents.

It lives in :mod:`adapters.simulated.clock`, with the simulator it serves;
this module re-exports it.
"""

from adapters.simulated.clock import VirtualTimeDeadlock, VirtualTimeLoop, run_virtual

__all__ = ["VirtualTimeDeadlock", "VirtualTimeLoop", "run_virtual"]
