"""The Academy's grader: lab discovery, checks with hints, progress in the registry."""
