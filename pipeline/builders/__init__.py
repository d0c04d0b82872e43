"""Step builders, one module per artifact kind. Each is `function(ctx: StepContext) -> verification dict`."""
