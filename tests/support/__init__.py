"""Helpers the tests and the benchmarks share: process control (:mod:`.processes`) and the
factory_boy factories (:mod:`.factories`)."""
