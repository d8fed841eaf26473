"""The laws L1-L11 as Hypothesis specs, and the worlds they are run in."""
