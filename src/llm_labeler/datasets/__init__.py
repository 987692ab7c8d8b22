"""Public data sets turned into users with histories and gold segments."""
