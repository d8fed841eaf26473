"""Benchmarks: time to protection and cost, side by side with the algorithms
users would otherwise run (the incident's legacy code and the seed fix plan).

Everything runs in virtual time on the simulated exchange, so thousands of
attempts per profile take seconds and the same seed gives the same numbers.
One command::

    python -m benchmarks [--quick] [--out benchmarks/results]

See ``benchmarks/README.md`` for what each number means and the targets.
"""
