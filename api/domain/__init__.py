"""What every surface and the service share: the caller, domain errors, commands."""
