"""The cycle over sources (`cycle`), the fleet read model (`fleet`), the scheduler and the source prober."""
