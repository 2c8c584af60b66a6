"""rxstream's test kit: ProviderEmulator, a loopback HTTP server replaying recorded provider streams with faults."""

from rxstream.testing._emulator import Fault, Pace, ProviderEmulator, ReceivedRequest, StreamOutcome

__all__ = ["Fault", "Pace", "ProviderEmulator", "ReceivedRequest", "StreamOutcome"]
