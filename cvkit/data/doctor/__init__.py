"""`cvkit doctor`: every problem of a dataset at once (see ``cvkit.engine.doctor``)."""
